//! serde helpers for lenient reading: a wrong type reads as `None` or a default.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// serde helpers
// ---------------------------------------------------------------------------------------

/// A field of the wrong type reads as `None` instead of failing the whole body.
pub(crate) fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    Ok(if v.is_null() {
        None
    } else {
        serde_json::from_value(v).ok()
    })
}

pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

pub(crate) fn null_as_one<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(Option::<u32>::deserialize(d)?.unwrap_or(1))
}

pub(crate) fn one() -> u32 {
    1
}

pub(crate) fn field<T: DeserializeOwned>(obj: &Value, key: &str) -> Option<T> {
    obj.get(key)
        .filter(|v| !v.is_null())
        .and_then(|v| T::deserialize(v).ok())
}
