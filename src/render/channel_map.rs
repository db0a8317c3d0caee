//! Channel maps: which capture channels feed which output channels, with what gain.
//! Pure: a job's `captureChannelSelection` and `channelMap` in, a [`Mix`] out.
//!
//! Channel numbers on the wire are 1-based. `captureChannelSelection` (ordered) picks the
//! device channels the job renders; a `channelMap`'s `sourceChannelIndex` counts within that
//! selection when there is one, else device channels.

use crate::controller::protocol::{ChannelMap, ChannelMapBundle, ChannelMapEntry};

/// How the output channels are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelMode {
    /// One channel: the average of the included channels.
    Mono,
    /// Two channels: outputs 1 and 2 (a single source feeds both).
    Stereo,
    /// The mono average on both channels.
    MonoToStereoMix,
    /// One output channel per included entry.
    Multichannel,
}

impl ChannelMode {
    pub fn parse(s: &str) -> Option<ChannelMode> {
        match s {
            "mono" => Some(ChannelMode::Mono),
            "stereo" => Some(ChannelMode::Stereo),
            "mono_to_stereo_mix" => Some(ChannelMode::MonoToStereoMix),
            "multichannel" => Some(ChannelMode::Multichannel),
            _ => None,
        }
    }
}

/// Output channel `o` is `sum(gain * input[ch])` over `outputs[o]`; inputs are 0-based
/// channels of the capture.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix {
    pub inputs: u16,
    pub outputs: Vec<Vec<(usize, f32)>>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error(
        "channel map names channel {channel} ({what}), but the capture has only {available} channel(s)"
    )]
    MissingChannel {
        channel: u16,
        what: &'static str,
        available: u16,
    },
    #[error("channel map mode {0:?} is not one of mono, stereo, mono_to_stereo_mix, multichannel")]
    UnknownMode(String),
    #[error("channel map includes no channel")]
    Empty,
}

impl Mix {
    /// Every input channel to the output channel of the same number.
    pub fn identity(channels: u16) -> Mix {
        Mix {
            inputs: channels,
            outputs: (0..channels as usize).map(|c| vec![(c, 1.0)]).collect(),
        }
    }

    pub fn out_channels(&self) -> u16 {
        self.outputs.len() as u16
    }

    /// Output channel `i` is input channel `i`, every one of them: nothing to do.
    pub fn is_identity(&self) -> bool {
        self.outputs.len() == self.inputs as usize
            && self
                .outputs
                .iter()
                .enumerate()
                .all(|(i, o)| o.len() == 1 && o[0] == (i, 1.0))
    }

    /// Every output is one input at gain 1: samples pass through unchanged.
    pub fn is_selection(&self) -> bool {
        self.outputs.iter().all(|o| o.len() == 1 && o[0].1 == 1.0)
    }

    /// Mixes interleaved `input` frames (`inputs` wide) into `out` (cleared first).
    pub fn apply(&self, input: &[f32], out: &mut Vec<f32>) {
        out.clear();
        for frame in input.chunks_exact(self.inputs as usize) {
            for sources in &self.outputs {
                out.push(sources.iter().map(|&(ch, g)| frame[ch] * g).sum());
            }
        }
    }
}

/// The mix for a job: `selection` (1-based device channels, ordered) then `map`.
/// `device_channels` is what the capture has.
pub fn resolve(
    device_channels: u16,
    selection: Option<&[u16]>,
    map: Option<&ChannelMap>,
) -> Result<Mix, MapError> {
    let selected: Vec<usize> = match selection {
        Some(sel) if !sel.is_empty() => sel
            .iter()
            .map(|&c| device_channel(c, device_channels, "captureChannelSelection"))
            .collect::<Result<_, _>>()?,
        _ => (0..device_channels as usize).collect(),
    };
    let Some(map) = map.filter(|m| !m.channel_mode.is_empty() || !m.entries.is_empty()) else {
        return Ok(Mix {
            inputs: device_channels,
            outputs: selected.iter().map(|&c| vec![(c, 1.0)]).collect(),
        });
    };
    let mode = ChannelMode::parse(&map.channel_mode)
        .ok_or_else(|| MapError::UnknownMode(map.channel_mode.clone()))?;
    let included: Vec<&ChannelMapEntry> = map.entries.iter().filter(|e| e.included).collect();
    // Each included entry's device channel, checked.
    let source = |e: &ChannelMapEntry| -> Result<usize, MapError> {
        let i = e.source_channel_index;
        if i == 0 || i as usize > selected.len() {
            return Err(MapError::MissingChannel {
                channel: i,
                what: "channelMap sourceChannelIndex",
                available: selected.len() as u16,
            });
        }
        Ok(selected[i as usize - 1])
    };
    let sources: Vec<usize> = included
        .iter()
        .map(|e| source(e))
        .collect::<Result<_, _>>()?;
    if sources.is_empty() {
        return Err(MapError::Empty);
    }
    let average = || -> Vec<(usize, f32)> {
        let g = 1.0 / sources.len() as f32;
        sources.iter().map(|&c| (c, g)).collect()
    };
    let outputs = match mode {
        ChannelMode::Mono => vec![average()],
        ChannelMode::MonoToStereoMix => vec![average(), average()],
        ChannelMode::Stereo => stereo(&included, &sources),
        ChannelMode::Multichannel => multichannel(&included, &sources),
    };
    Ok(Mix {
        inputs: device_channels,
        outputs,
    })
}

/// Left and right from the entries pinned to outputs 1 and 2, else the first two included;
/// a single entry feeds both.
fn stereo(included: &[&ChannelMapEntry], sources: &[usize]) -> Vec<Vec<(usize, f32)>> {
    let pinned = |o: u16| {
        included
            .iter()
            .position(|e| e.output_channel_index == Some(o))
            .map(|i| sources[i])
    };
    let (left, right) = match (pinned(1), pinned(2)) {
        (Some(l), Some(r)) => (l, r),
        _ if sources.len() >= 2 => (sources[0], sources[1]),
        _ => (sources[0], sources[0]),
    };
    vec![vec![(left, 1.0)], vec![(right, 1.0)]]
}

/// One output per included entry, placed by `outputChannelIndex` when given (entries
/// without one take the following places, in order).
fn multichannel(included: &[&ChannelMapEntry], sources: &[usize]) -> Vec<Vec<(usize, f32)>> {
    let mut order: Vec<(u32, usize)> = included
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let key = e
                .output_channel_index
                .map_or(u32::MAX / 2 + i as u32, u32::from);
            (key, sources[i])
        })
        .collect();
    order.sort_by_key(|&(key, _)| key);
    order.into_iter().map(|(_, c)| vec![(c, 1.0)]).collect()
}

/// The map for a job that pins none, from the node's channel-map assignments: one whose
/// target is the job's interface (`captureInterfaceId`, or its device, as Rakkr's agent
/// matches) first, then the node's own. `None` when neither is assigned.
pub fn pick_assignment(
    bundles: &[ChannelMapBundle],
    interface_id: Option<&str>,
    device: &str,
    node_id: &str,
) -> Option<ChannelMap> {
    let is = |b: &&ChannelMapBundle, kind: &str, id: &str| {
        b.assignment.target_type == kind && b.assignment.target_id == id && !id.is_empty()
    };
    let found = bundles
        .iter()
        .find(|b| interface_id.is_some_and(|i| is(b, "interface", i)) || is(b, "interface", device))
        .or_else(|| bundles.iter().find(|b| is(b, "node", node_id)))?;
    Some(ChannelMap {
        assignment_id: found.assignment.id.clone(),
        channel_mode: found.template.channel_mode.clone(),
        entries: found.template.entries.clone(),
        source_channels: 0,
        target_id: found.assignment.target_id.clone(),
        target_type: found.assignment.target_type.clone(),
        template_id: found.template.id.clone(),
        template_name: found.template.name.clone(),
    })
}

fn device_channel(c: u16, available: u16, what: &'static str) -> Result<usize, MapError> {
    if c == 0 || c > available {
        return Err(MapError::MissingChannel {
            channel: c,
            what,
            available,
        });
    }
    Ok(c as usize - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: u16, output: Option<u16>, included: bool) -> ChannelMapEntry {
        ChannelMapEntry {
            included,
            label: format!("ch{source}"),
            output_channel_index: output,
            source_channel_index: source,
        }
    }

    fn map(mode: &str, entries: Vec<ChannelMapEntry>) -> ChannelMap {
        ChannelMap {
            channel_mode: mode.into(),
            entries,
            ..Default::default()
        }
    }

    fn g(pairs: &[(usize, f32)]) -> Vec<(usize, f32)> {
        pairs.to_vec()
    }

    #[test]
    fn modes_table() {
        let e = entry;
        // (case, device channels, selection, map, expected outputs)
        type Case = (
            &'static str,
            u16,
            Option<Vec<u16>>,
            Option<ChannelMap>,
            Vec<Vec<(usize, f32)>>,
        );
        let cases: Vec<Case> = vec![
            ("all", 2, None, None, vec![g(&[(0, 1.0)]), g(&[(1, 1.0)])]),
            (
                "selection order",
                4,
                Some(vec![3, 1]),
                None,
                vec![g(&[(2, 1.0)]), g(&[(0, 1.0)])],
            ),
            (
                "mono average",
                4,
                None,
                Some(map(
                    "mono",
                    vec![e(1, None, true), e(2, None, false), e(4, None, true)],
                )),
                vec![g(&[(0, 0.5), (3, 0.5)])],
            ),
            (
                "mono_to_stereo_mix",
                3,
                None,
                Some(map(
                    "mono_to_stereo_mix",
                    vec![e(2, None, true), e(3, None, true)],
                )),
                vec![g(&[(1, 0.5), (2, 0.5)]), g(&[(1, 0.5), (2, 0.5)])],
            ),
            (
                "stereo pinned",
                4,
                None,
                Some(map(
                    "stereo",
                    vec![e(1, Some(2), true), e(2, None, true), e(4, Some(1), true)],
                )),
                vec![g(&[(3, 1.0)]), g(&[(0, 1.0)])],
            ),
            (
                "stereo first two",
                4,
                None,
                Some(map(
                    "stereo",
                    vec![e(1, None, false), e(3, None, true), e(2, None, true)],
                )),
                vec![g(&[(2, 1.0)]), g(&[(1, 1.0)])],
            ),
            (
                "stereo single feeds both",
                2,
                None,
                Some(map("stereo", vec![e(2, None, true)])),
                vec![g(&[(1, 1.0)]), g(&[(1, 1.0)])],
            ),
            (
                "multichannel placed",
                4,
                None,
                Some(map(
                    "multichannel",
                    vec![
                        e(1, Some(3), true),
                        e(2, Some(1), true),
                        e(3, None, true),
                        e(4, Some(2), true),
                    ],
                )),
                vec![
                    g(&[(1, 1.0)]),
                    g(&[(3, 1.0)]),
                    g(&[(0, 1.0)]),
                    g(&[(2, 1.0)]),
                ],
            ),
            (
                "map within selection",
                4,
                Some(vec![4, 2]),
                Some(map(
                    "stereo",
                    vec![e(2, Some(1), true), e(1, Some(2), true)],
                )),
                vec![g(&[(1, 1.0)]), g(&[(3, 1.0)])],
            ),
        ];
        for (name, channels, sel, m, want) in cases {
            let mix = resolve(channels, sel.as_deref(), m.as_ref()).unwrap();
            assert_eq!(mix.outputs, want, "{name}");
            assert_eq!(mix.inputs, channels, "{name}");
        }
    }

    #[test]
    fn missing_channels_are_named() {
        let err = resolve(2, Some(&[1, 3]), None).unwrap_err();
        assert_eq!(
            err,
            MapError::MissingChannel {
                channel: 3,
                what: "captureChannelSelection",
                available: 2
            }
        );
        assert!(err.to_string().contains("channel 3"), "{err}");
        let m = map("mono", vec![entry(5, None, true)]);
        let err = resolve(4, None, Some(&m)).unwrap_err();
        assert!(err.to_string().contains("channel 5"), "{err}");
        // An excluded entry may name anything: it is not rendered.
        let m = map("mono", vec![entry(1, None, true), entry(9, None, false)]);
        assert!(resolve(1, None, Some(&m)).is_ok());
        let m = map("surround", vec![entry(1, None, true)]);
        assert!(matches!(
            resolve(2, None, Some(&m)),
            Err(MapError::UnknownMode(_))
        ));
        let m = map("mono", vec![entry(1, None, false)]);
        assert_eq!(resolve(2, None, Some(&m)), Err(MapError::Empty));
    }

    #[test]
    fn assignments_prefer_the_interface_then_the_node() {
        use crate::controller::protocol::{ChannelMapAssignment, ChannelMapTemplate};
        let bundle = |kind: &str, target: &str, mode: &str| ChannelMapBundle {
            assignment: ChannelMapAssignment {
                id: format!("a-{target}"),
                target_id: target.into(),
                target_type: kind.into(),
                ..Default::default()
            },
            template: ChannelMapTemplate {
                channel_mode: mode.into(),
                entries: vec![entry(1, None, true)],
                ..Default::default()
            },
        };
        let all = vec![
            bundle("node", "n1", "stereo"),
            bundle("interface", "if-2", "mono"),
            bundle("interface", "if-1", "multichannel"),
        ];
        let pick = |iface: Option<&str>, device: &str, node: &str| {
            pick_assignment(&all, iface, device, node).map(|m| m.channel_mode)
        };
        assert_eq!(
            pick(Some("if-1"), "hw:9", "n1").as_deref(),
            Some("multichannel")
        );
        // The device names the interface when the job gives no interface id.
        assert_eq!(pick(None, "if-2", "n1").as_deref(), Some("mono"));
        assert_eq!(pick(Some("if-9"), "hw:9", "n1").as_deref(), Some("stereo"));
        assert_eq!(pick(Some("if-9"), "hw:9", "n2"), None);
        assert_eq!(pick(None, "", ""), None);
        assert_eq!(
            pick_assignment(&all, Some("if-2"), "hw:0", "n1")
                .unwrap()
                .assignment_id,
            "a-if-2"
        );
    }

    #[test]
    fn apply_mixes_each_frame() {
        let mix = resolve(
            3,
            None,
            Some(&map(
                "mono_to_stereo_mix",
                vec![entry(1, None, true), entry(3, None, true)],
            )),
        )
        .unwrap();
        let mut out = Vec::new();
        mix.apply(&[0.5, 9.0, 0.25, -1.0, 9.0, 0.0], &mut out);
        assert_eq!(out, vec![0.375, 0.375, -0.5, -0.5]);
        assert!(!mix.is_selection());
        assert!(Mix::identity(2).is_selection());
        assert!(Mix::identity(3).is_identity());
        assert!(!resolve(2, Some(&[2, 1]), None).unwrap().is_identity());
        assert!(!resolve(3, Some(&[1, 2]), None).unwrap().is_identity());
    }
}
