//! A job's `captureBackend`: `alsa` captures the device as named; `pipewire` and `jack`
//! go through ALSA's own plugins for them (pipewire-alsa's `pipewire` PCM, alsa-plugins'
//! `jack` PCM), so capture stays in-process on the same path. A backend that is not
//! there fails the job at claim with that reason, never silently captured from ALSA.

use crate::capture::CaptureRequest;
use crate::core::format::StreamSpec;

/// Where a job's audio comes from: the ALSA PCM to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Source {
    /// The backend as the job named it (for logs and health events).
    pub backend: String,
    pub device: String,
}

/// The ALSA PCM name for `device` under `backend`: pure, so the mapping is a table.
pub(super) fn pcm_for(backend: Option<&str>, device: &str) -> Result<Source, String> {
    let backend = backend.unwrap_or("alsa").trim().to_ascii_lowercase();
    let device = match backend.as_str() {
        "alsa" | "" => device.to_string(),
        // pipewire-alsa: `pipewire:DEVICE=<node>` targets one node; the default follows
        // the session manager's choice.
        "pipewire" if device.is_empty() || device == "default" => "pipewire".to_string(),
        "pipewire" if device.starts_with("pipewire") => device.to_string(),
        "pipewire" => format!("pipewire:DEVICE={device}"),
        // alsa-plugins' jack PCM has no port argument: `default` is the `jack` PCM, any
        // other name is a PCM the integrator defined (`pcm.<name> { type jack ... }`).
        "jack" if device.is_empty() || device == "default" => "jack".to_string(),
        "jack" => device.to_string(),
        other => {
            return Err(format!(
                "capture_backend_unavailable: {other:?} is not a capture backend this agent \
                 has (alsa, pipewire, jack)"
            ));
        }
    };
    Ok(Source {
        backend: if backend.is_empty() {
            "alsa".into()
        } else {
            backend
        },
        device,
    })
}

/// For `pipewire` and `jack`: whether the server answers, by opening the PCM briefly in
/// the job's format (the plugin connects to the server at open). `alsa` devices are not
/// opened here: a missing one is retried until the job's window ends.
pub(super) fn check_available(source: &Source, spec: StreamSpec) -> Result<(), String> {
    if source.backend == "alsa" {
        return Ok(());
    }
    let request = CaptureRequest::new(source.device.clone(), spec);
    match crate::capture::alsa::AlsaSource::open(&request) {
        Ok(pcm) => {
            drop(pcm);
            Ok(())
        }
        Err(e) => Err(format!(
            "capture_backend_unavailable: {}: {e}; install and run it (pipewire-alsa, \
             alsa-plugins' jack) or send the job with captureBackend alsa",
            source.backend
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (job's backend, job's device, (backend, PCM) or a piece of the refusal).
    type Row<'a> = (
        Option<&'a str>,
        &'a str,
        Result<(&'a str, &'a str), &'a str>,
    );

    #[test]
    fn each_backend_maps_to_the_alsa_pcm_that_carries_it() {
        let ok = |b: Option<&str>, d: &str| pcm_for(b, d).map(|s| (s.backend, s.device));
        let cases: [Row; 8] = [
            (
                None,
                "plughw:CARD=X,DEV=0",
                Ok(("alsa", "plughw:CARD=X,DEV=0")),
            ),
            (Some("ALSA"), "hw:1", Ok(("alsa", "hw:1"))),
            (Some("pipewire"), "default", Ok(("pipewire", "pipewire"))),
            (
                Some("pipewire"),
                "alsa_input.usb-X",
                Ok(("pipewire", "pipewire:DEVICE=alsa_input.usb-X")),
            ),
            (
                Some("pipewire"),
                "pipewire:DEVICE=n",
                Ok(("pipewire", "pipewire:DEVICE=n")),
            ),
            (Some("jack"), "default", Ok(("jack", "jack"))),
            (Some("jack"), "jack_4in", Ok(("jack", "jack_4in"))),
            (Some("coreaudio"), "x", Err("is not a capture backend")),
        ];
        for (backend, device, want) in cases {
            match (ok(backend, device), want) {
                (Ok((b, d)), Ok((wb, wd))) => assert_eq!((b.as_str(), d.as_str()), (wb, wd)),
                (Err(e), Err(w)) => assert!(e.contains(w), "{e}"),
                (got, want) => panic!("{backend:?} {device}: {got:?}, want {want:?}"),
            }
        }
    }
}
