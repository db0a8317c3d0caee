//! Bodies every call shares: the `data` envelope, error bodies, backend names.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

// ---------------------------------------------------------------------------------------
// General
// ---------------------------------------------------------------------------------------

/// Every success body: `{"data": ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub data: T,
}

/// Every error body: `{"error": "...", "issues"?: [...]}` (`issues` are zod issues on a 400).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issues: Option<Vec<Value>>,
}

impl ErrorBody {
    /// Reads an error reply: the JSON body when it is one, else the start of the text (a
    /// proxy's HTML page, say), so the log still says something useful.
    pub fn from_bytes(bytes: &[u8]) -> ErrorBody {
        if let Ok(body) = serde_json::from_slice::<ErrorBody>(bytes)
            && !body.error.is_empty()
        {
            return body;
        }
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        let mut end = text.len().min(300);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        ErrorBody {
            error: text[..end].to_string(),
            issues: None,
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.error.is_empty() {
            f.write_str("(no error message)")?;
        } else {
            f.write_str(&self.error)?;
        }
        if let Some(issues) = &self.issues
            && !issues.is_empty()
        {
            write!(
                f,
                " ({} issues: {})",
                issues.len(),
                Value::from(issues.clone())
            )?;
        }
        Ok(())
    }
}

/// The audio backends the controller knows; anything else reads as `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioBackend {
    Alsa,
    Jack,
    Pipewire,
    #[serde(other)]
    Unknown,
}
