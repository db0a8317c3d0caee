SUMMARY = "Crash-safe audio capture agent for headless recording boxes"
DESCRIPTION = "edgerec records audio without losing it (segments on disk, a crash \
               journal) and does the jobs a controller gives it. Installs the capture \
               and sync roles as systemd units, udev rules and /etc/edgerec/edgerec.toml."
HOMEPAGE = "https://edgerec.invalid/"
BUGTRACKER = "https://edgerec.invalid/issues"
SECTION = "multimedia"
CVE_PRODUCT = "edgerec"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=7;endline=7;md5=86b31c7756a1a7962f28b62856ed4f05"

DEPENDS += "alsa-lib"

# The source: point a bbappend (or local.conf) at your edgerec repository and commit
# (SRC_URI's git:// entry and SRCREV); see the layer's README.
SRC_URI = "git://edgerec.invalid/edgerec.git;protocol=https;branch=main \
           file://edgerec-capture.service \
           file://edgerec-sync.service \
           file://edgerec.service \
           file://90-edgerec.rules \
           file://edgerec.toml \
           "
SRCREV ??= "${AUTOREV}"

S = "${UNPACKDIR}/git"

require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates systemd useradd

# Only the agent (the root package); the reference controller is not for boxes.
CARGO_BUILD_FLAGS += "--bin edgerec"

USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system -f audio"
USERADD_PARAM:${PN} = "--system --home-dir ${localstatedir}/lib/edgerec --no-create-home \
                       --shell ${base_sbindir}/nologin --gid audio edgerec"

SYSTEMD_PACKAGES = "${PN}"
# The two roles run; edgerec.service (both in one process) is installed, not enabled.
SYSTEMD_SERVICE:${PN} = "edgerec-capture.service edgerec-sync.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${UNPACKDIR}/edgerec-capture.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${UNPACKDIR}/edgerec-sync.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${UNPACKDIR}/edgerec.service ${D}${systemd_system_unitdir}/
    install -d ${D}${nonarch_base_libdir}/udev/rules.d
    install -m 0644 ${UNPACKDIR}/90-edgerec.rules ${D}${nonarch_base_libdir}/udev/rules.d/
    install -d ${D}${sysconfdir}/edgerec
    install -m 0644 ${UNPACKDIR}/edgerec.toml ${D}${sysconfdir}/edgerec/
    install -d -m 0750 -o edgerec -g audio ${D}${localstatedir}/lib/edgerec
}

CONFFILES:${PN} = "${sysconfdir}/edgerec/edgerec.toml"
FILES:${PN} += "${systemd_system_unitdir}/edgerec.service ${nonarch_base_libdir}/udev/rules.d"
RDEPENDS:${PN} += "alsa-lib"
