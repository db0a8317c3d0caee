//! The node's own bodies: its heartbeat and its inventory of capture interfaces.

use crate::controller::protocol::{
    AudioBackend, ChannelInfo, Interface, NodeHeartbeat, NodeStatus, Runtime,
};

pub(super) fn node_heartbeat() -> NodeHeartbeat {
    NodeHeartbeat {
        agent_version: format!("edgerec/{}", env!("CARGO_PKG_VERSION")),
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        ip_addresses: ip_addresses(),
        status: NodeStatus::Online,
        runtime: Some(Runtime {
            architecture: Some(std::env::consts::ARCH.to_string()),
            audio_backends: vec![AudioBackend::Alsa],
            kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string()),
            os_name: Some(std::env::consts::OS.to_string()),
            uptime_seconds: std::fs::read_to_string("/proc/uptime")
                .ok()
                .and_then(|s| s.split('.').next().and_then(|n| n.parse().ok())),
        }),
        interfaces: None,
    }
}

/// The box's addresses as an operator would dial them: not loopback, IPv4 first, at
/// most the 16 the protocol allows. An interface that cannot be listed is left out.
fn ip_addresses() -> Vec<String> {
    let mut addrs: Vec<std::net::IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.is_loopback())
        .map(|i| i.ip())
        .collect();
    addrs.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    addrs.dedup();
    addrs
        .into_iter()
        .take(16)
        .map(|ip| ip.to_string())
        .collect()
}

/// The capture interfaces for the inventory, by stable identity.
pub(crate) fn interfaces() -> Vec<Interface> {
    crate::capture::devices::list()
        .into_iter()
        .filter(|d| d.backend == "alsa")
        .take(64)
        .map(|d| {
            let channels = d.caps.as_ref().map_or(0, |c| c.channels_max).min(256) as u16;
            Interface {
                alias: d.description.clone(),
                backend: AudioBackend::Alsa,
                channel_count: channels,
                channels: (1..=channels)
                    .map(|i| ChannelInfo {
                        alias: format!("ch{i}"),
                        index: i,
                    })
                    .collect(),
                hardware_path: None,
                sample_rates: d
                    .caps
                    .as_ref()
                    .map(|c| c.rates.iter().copied().take(16).collect())
                    .unwrap_or_default(),
                serial_number: None,
                system_name: d.name.clone(),
                system_ref: Some(d.identity.clone()),
            }
        })
        .collect()
}

/// Tells the sync role when the box's capture hardware may have changed, so the
/// inventory follows it: a udev hotplug (`edgerec hotplug`) at once — a thread waits on
/// the role's own hotplug socket and wakes the loop — and a change in the kernel's card
/// list (`/proc/asound/cards`, read without opening any device) at each node heartbeat,
/// for boxes without the udev rule.
pub(crate) struct InventoryWatch {
    hotplugged: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cards: String,
}

impl InventoryWatch {
    pub fn new(
        state_dir: &std::path::Path,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> InventoryWatch {
        use std::sync::atomic::{AtomicBool, Ordering};
        let hotplugged = std::sync::Arc::new(AtomicBool::new(false));
        let flag = hotplugged.clone();
        let listen = crate::capture::hotplug::HotplugListener::bind(state_dir).and_then(|l| {
            std::thread::Builder::new()
                .name("edgerec-sync-hotplug".into())
                .spawn(move || {
                    // Lives with the process; the long wait costs one wake-up an hour.
                    loop {
                        let Some(ev) = l.wait(std::time::Duration::from_secs(3600)) else {
                            continue;
                        };
                        // The sync role's own post-claim wake-ups are not hardware.
                        if matches!(ev.action.as_str(), "add" | "remove" | "change") {
                            flag.store(true, Ordering::Release);
                            wake();
                        }
                    }
                })
                .map(drop)
        });
        if let Err(e) = listen {
            log::warn!("sync: no hotplug socket ({e}); the inventory follows at heartbeats");
        }
        InventoryWatch {
            hotplugged,
            cards: cards(),
        }
    }

    /// udev reported a device coming or going since the last look.
    pub fn hotplugged(&self) -> bool {
        self.hotplugged
            .swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    /// The card list differs from the last look.
    pub fn cards_changed(&mut self) -> bool {
        let now = cards();
        std::mem::replace(&mut self.cards, now) != self.cards
    }
}

fn cards() -> String {
    std::fs::read_to_string("/proc/asound/cards").unwrap_or_default()
}
