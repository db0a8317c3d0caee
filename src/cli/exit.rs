//! Exit codes, one per kind of failure an operator must handle differently, and how an
//! error becomes one.

use edgerec::config::ConfigError;

pub const FAILURE: u8 = 1;
pub const BAD_CONFIG: u8 = 3;
pub const NO_SUCH_DEVICE: u8 = 4;
pub const DEVICE_BUSY: u8 = 5;
pub const UNSUPPORTED_FORMAT: u8 = 6;
pub const UNWRITABLE_OUTPUT: u8 = 7;
pub const DEVICE_FAILED: u8 = 8;
/// `render`: no finished job where the operator pointed.
pub const NOT_FOUND: u8 = 9;
/// `record`: the job's window ended without a single frame from the device.
pub const NO_AUDIO: u8 = 11;
/// The journal is damaged (`PRAGMA quick_check` failed): nothing was finalized; run
/// `edgerec repair --rebuild DIR`.
pub const JOURNAL_DAMAGED: u8 = 12;
/// `enroll` over a token that still works (or cannot be checked): nothing changed.
pub const ALREADY_ENROLLED: u8 = 13;

/// What a command failed with: its exit code and the message printed on stderr.
pub(crate) type Failure = (u8, String);

/// Any error whose cause chain holds a damaged journal gets its own exit code.
fn journal_damaged(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.downcast_ref::<edgerec::journal::JournalError>()
            .is_some_and(|j| j.is_damaged())
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// `code`, unless the error comes from a damaged journal.
pub(crate) fn failure_code(e: &(dyn std::error::Error + 'static), code: u8) -> u8 {
    if journal_damaged(e) {
        JOURNAL_DAMAGED
    } else {
        code
    }
}

pub(crate) fn config_failure(e: ConfigError) -> Failure {
    (BAD_CONFIG, e.to_string())
}
