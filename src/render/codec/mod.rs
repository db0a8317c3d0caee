//! Encoders behind one trait, in one table: adding a codec is one line in [`CODECS`].

pub mod flac;
pub mod meta;
pub mod mp3;
pub mod wav;

use std::fs::File;
use std::io;

use crate::core::format::SampleFormat;
pub use meta::Facts;

/// What an encoder takes: `f32` (nominal -1.0..1.0) or integers of a width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleKind {
    Float,
    Int(u16),
}

/// Interleaved samples, in the kind the encoder asked for.
#[derive(Clone, Copy, Debug)]
pub enum Samples<'a> {
    Float(&'a [f32]),
    Int(&'a [i32]),
}

/// How the output is laid out: the pipeline settles these before opening the encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderParams {
    pub rate: u32,
    pub channels: u16,
    /// Integer width for WAV/FLAC; 32 with `float` for IEEE float WAV.
    pub bits: u16,
    pub float: bool,
    pub bitrate_kbps: Option<u32>,
    pub vbr: bool,
    /// Frames the render will produce (the plan's length at the output rate).
    pub frames: u64,
    pub facts: Facts,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{0}")]
    Unsupported(String),
    #[error("writing the output: {0}")]
    Io(#[from] io::Error),
    #[error("encoder: {0}")]
    Encode(String),
}

pub trait Encoder: Send {
    fn input(&self) -> SampleKind;
    fn write(&mut self, samples: Samples<'_>) -> Result<(), CodecError>;
    /// Writes the tail and patches the headers; the file is synced when this returns.
    fn finish(self: Box<Self>) -> Result<(), CodecError>;
    /// [`Encoder::finish`], and the file's SHA-256 (hex) and size when the encoder took
    /// them while writing (`None`: the caller reads the file back to hash it).
    fn finish_hashed(self: Box<Self>) -> Result<Option<(String, u64)>, CodecError> {
        self.finish().map(|()| None)
    }
}

/// `(asked bits, asked float, source format)` to the output's `(bits, float)`.
pub type LayoutFn = fn(Option<u16>, bool, SampleFormat) -> Result<(u16, bool), CodecError>;
/// Opens an encoder writing to a fresh file.
pub type OpenFn = fn(File, &EncoderParams) -> Result<Box<dyn Encoder>, CodecError>;

/// One codec: its names, what it can carry, and how to open it.
pub struct Codec {
    pub name: &'static str,
    pub extension: &'static str,
    pub content_type: &'static str,
    pub max_rate: u32,
    pub max_channels: u16,
    /// The sample layout for a requested width (`None`: decided by the source).
    pub layout: LayoutFn,
    pub open: OpenFn,
}

#[rustfmt::skip]
pub static CODECS: &[Codec] = &[
    Codec { name: "wav", extension: "wav", content_type: "audio/wav", max_rate: 768_000, max_channels: 256, layout: wav::layout, open: wav::open },
    Codec { name: "flac", extension: "flac", content_type: "audio/flac", max_rate: 655_350, max_channels: 8, layout: flac::layout, open: flac::open },
    Codec { name: "mp3", extension: "mp3", content_type: "audio/mpeg", max_rate: 48_000, max_channels: 2, layout: mp3::layout, open: mp3::open },
];

/// The codec called `name` (case-insensitive).
pub fn codec(name: &str) -> Option<&'static Codec> {
    CODECS
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name.trim()))
}

/// The codec a file name's extension implies.
pub fn codec_for_file_name(name: &str) -> Option<&'static Codec> {
    let ext = name.rsplit_once('.')?.1;
    CODECS
        .iter()
        .find(|c| c.extension.eq_ignore_ascii_case(ext))
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Codec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// Bits a source format carries, for choosing the default output width.
pub fn source_bits(format: SampleFormat) -> u16 {
    format.valid_bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lookups() {
        assert_eq!(codec("FLAC").unwrap().content_type, "audio/flac");
        assert_eq!(codec_for_file_name("a.b.MP3").unwrap().name, "mp3");
        assert!(codec("ogg").is_none());
        assert!(codec_for_file_name("noext").is_none());
        for c in CODECS {
            assert_eq!(codec(c.name), Some(c));
            assert!(c.content_type.starts_with("audio/"));
        }
    }
}
