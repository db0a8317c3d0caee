//! A WAV delivery streamed from the segments, so the agent writes the audio once: the
//! stitched view (header, the plan's segments in order, silence for the timeline's gaps)
//! is made on the fly for the upload and its SHA-256, never written as a second file.
//!
//! Finalize saves the view in `render.json` with its length; the upload hashes the bytes
//! as it streams them (the controller's checksum is compared with that), so nothing reads
//! the recording before it is sent. The segments of a finalized job never change, so the
//! view gives the same bytes after a crash or a restart, and from any offset. The bytes
//! are those of the pipeline's WAV for the same job (header with `bext`, S24 packed to 3
//! bytes), with every format copied exactly (S32 too: no float pass).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::codec::Facts;
use super::stitch::{self, Packing, pack_s24_words, select_channels, wav_header};
use crate::controller::client::UploadBody;
use crate::core::format::StreamSpec;
use crate::core::timeline::Piece;

/// Frames read from a segment per step.
const STEP_BYTES: usize = 256 * 1024;

/// The stitched view of a job: what to read, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StitchedView {
    /// The segments' format.
    pub spec: StreamSpec,
    /// Device channels kept (0-based, in output order); all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<u16>>,
    /// The WAV header (hex), sizes filled in.
    pub header: String,
    pub pieces: Vec<ViewPiece>,
}

/// A segment's frames, or silence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewPiece {
    /// The segment, relative to the job directory (`../<leader>/…` for a group member);
    /// silence when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(default)]
    pub skip: u64,
    pub frames: u64,
}

impl StitchedView {
    /// The view of `plan` (segments of `spec`, under `job_dir` or its parent), keeping
    /// `channels` when given, with the WAV header the pipeline would write for `facts`.
    pub fn new(
        plan: &[Piece<PathBuf>],
        job_dir: &Path,
        spec: StreamSpec,
        channels: Option<&[u16]>,
        facts: &Facts,
    ) -> Result<StitchedView, String> {
        if let Some(sel) = channels
            && (sel.is_empty() || sel.iter().any(|&c| c >= spec.channels))
        {
            return Err(format!("channel selection {sel:?} does not fit {spec}"));
        }
        let pieces = plan
            .iter()
            .map(|p| view_piece(p, job_dir))
            .collect::<Result<Vec<_>, _>>()?;
        let mut view = StitchedView {
            spec,
            channels: channels.map(<[u16]>::to_vec),
            header: String::new(),
            pieces,
        };
        let out = view.out_spec();
        let frames = view.frames();
        let data = frames * out.bytes_per_frame() as u64;
        let bext = super::codec::wav::bext_chunk(facts, out);
        view.header = to_hex(&wav_header(&out, data, frames, &bext).bytes);
        Ok(view)
    }

    /// The format of the delivered WAV.
    pub fn out_spec(&self) -> StreamSpec {
        StreamSpec {
            format: Packing::for_input(self.spec.format).output_format(),
            channels: self
                .channels
                .as_ref()
                .map_or(self.spec.channels, |c| c.len() as u16),
            ..self.spec
        }
    }

    pub fn frames(&self) -> u64 {
        self.pieces.iter().map(|p| p.frames).sum()
    }

    fn data_bytes(&self) -> u64 {
        self.frames() * self.out_spec().bytes_per_frame() as u64
    }

    /// Bytes of the whole WAV: header, audio, RIFF pad byte.
    pub fn len(&self) -> u64 {
        let data = self.data_bytes();
        self.header.len() as u64 / 2 + data + data % 2
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes from `offset` on, reading the segments under `job_dir`.
    pub fn open_at(&self, job_dir: &Path, offset: u64) -> io::Result<ViewReader> {
        ViewReader::new(self, job_dir, offset)
    }
}

fn view_piece(p: &Piece<PathBuf>, job_dir: &Path) -> Result<ViewPiece, String> {
    Ok(match p {
        Piece::Silence { frames } => ViewPiece {
            segment: None,
            skip: 0,
            frames: *frames,
        },
        Piece::Segment { file, skip, frames } => {
            let rel = match file.strip_prefix(job_dir) {
                Ok(rel) => rel.to_string_lossy().into_owned(),
                Err(_) => match job_dir.parent().map(|d| file.strip_prefix(d)) {
                    Some(Ok(rel)) => format!("../{}", rel.to_string_lossy()),
                    _ => return Err(format!("segment {} is outside the job", file.display())),
                },
            };
            ViewPiece {
                segment: Some(rel),
                skip: *skip,
                frames: *frames,
            }
        }
    })
}

/// A view's segment path under `job_dir`: relative, at most one `..` (a group leader's
/// directory beside it), so a damaged `render.json` cannot name files elsewhere.
fn segment_path(job_dir: &Path, rel: &str) -> io::Result<PathBuf> {
    let p = Path::new(rel);
    let ups = p
        .components()
        .filter(|c| *c == Component::ParentDir)
        .count();
    let plain = p
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::ParentDir));
    if !plain || ups > 1 || (ups == 1 && !rel.starts_with("../")) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("render.json names segment {rel:?} outside the job"),
        ));
    }
    Ok(job_dir.join(p))
}

/// Where a step's output bytes are: the bytes read, when they need no conversion (no
/// copy), or `out`.
#[derive(Clone, Copy, Debug)]
enum Ready {
    Input(usize),
    Out,
}

/// Reads a [`StitchedView`], one step of frames at a time.
pub struct ViewReader {
    header: Vec<u8>,
    spec: StreamSpec,
    pack: Packing,
    select: Option<Vec<usize>>,
    /// (segment file, first frame, frames) left to read, in order.
    pieces: std::vec::IntoIter<(Option<PathBuf>, u64, u64)>,
    src: Option<File>,
    left: u64,
    frames_per_step: u64,
    input: Vec<u8>,
    packed: Vec<u8>,
    out: Vec<u8>,
    /// Where the step's output bytes are.
    ready: Ready,
    /// Bytes of the header or of the step's output already read.
    at: usize,
    /// Bytes `next_chunk` lent, read as of the next call.
    lent: usize,
    in_header: bool,
    pad: bool,
}

impl ViewReader {
    fn new(view: &StitchedView, job_dir: &Path, offset: u64) -> io::Result<ViewReader> {
        let header = from_hex(&view.header)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "render.json: bad header"))?;
        let out_bpf = view.out_spec().bytes_per_frame() as u64;
        let pieces = view
            .pieces
            .iter()
            .map(|p| {
                let file = p.segment.as_deref().map(|s| segment_path(job_dir, s));
                Ok((file.transpose()?, p.skip, p.frames))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let in_bpf = view.spec.bytes_per_frame();
        let frames_per_step = (STEP_BYTES / in_bpf).max(1);
        let mut r = ViewReader {
            spec: view.spec,
            pack: Packing::for_input(view.spec.format),
            select: view
                .channels
                .as_ref()
                .map(|c| c.iter().map(|&ch| usize::from(ch)).collect()),
            pieces: pieces.into_iter(),
            src: None,
            left: 0,
            frames_per_step: frames_per_step as u64,
            input: vec![0; frames_per_step * in_bpf],
            packed: Vec::new(),
            out: Vec::new(),
            ready: Ready::Out,
            at: 0,
            lent: 0,
            in_header: true,
            pad: view.data_bytes() % 2 == 1,
            header,
        };
        r.seek_to(offset, out_bpf)?;
        Ok(r)
    }

    /// Starts at `offset`: in the header, or at a frame (and a byte within it).
    fn seek_to(&mut self, offset: u64, out_bpf: u64) -> io::Result<()> {
        let header_len = self.header.len() as u64;
        if offset < header_len {
            self.at = offset as usize;
            return Ok(());
        }
        self.in_header = false;
        let data = offset - header_len;
        let (mut frame, within) = (data / out_bpf, (data % out_bpf) as usize);
        let rest: Vec<_> = std::mem::take(&mut self.pieces).collect();
        let mut kept = Vec::with_capacity(rest.len());
        for (file, skip, frames) in rest {
            if frame >= frames {
                frame -= frames;
            } else {
                kept.push((file, skip + frame, frames - frame));
                frame = 0;
            }
        }
        if frame > 0 || (kept.is_empty() && within > 0) {
            // Past the audio: only the pad byte can be left.
            self.pad &= frame == 0 && within == 0;
        }
        self.pieces = kept.into_iter();
        if within > 0 && self.refill()? {
            self.at = within;
        }
        Ok(())
    }

    /// The next step of output bytes into `out`; false at the end of the audio.
    fn refill(&mut self) -> io::Result<bool> {
        while self.left == 0 {
            let Some((file, skip, frames)) = self.pieces.next() else {
                return Ok(false);
            };
            self.src = match file {
                Some(f) => Some(
                    stitch::open_segment(&f, self.spec, skip, frames)
                        .map_err(|e| io::Error::other(e.to_string()))?,
                ),
                None => None,
            };
            self.left = frames;
        }
        let n = self.left.min(self.frames_per_step) as usize;
        let in_bpf = self.spec.bytes_per_frame();
        let input = &mut self.input[..n * in_bpf];
        match self.src.as_mut() {
            Some(f) => f.read_exact(input)?,
            None => input.fill(0), // 0 is silence in every format, float too
        }
        self.left -= n as u64;
        self.ready = match (self.pack, &self.select) {
            (Packing::Copy(_), None) => Ready::Input(n * in_bpf),
            _ => {
                self.convert(n);
                Ready::Out
            }
        };
        self.at = 0;
        Ok(true)
    }

    /// The current step's output bytes.
    fn step_bytes(&self) -> &[u8] {
        match self.ready {
            Ready::Input(len) => &self.input[..len],
            Ready::Out => &self.out,
        }
    }

    /// The view's next bytes, borrowed (the header, then a step of audio at a time, then
    /// the pad byte): what `read` would copy out, for callers that only look at them.
    /// Empty at the end. They count as read at the reader's next call.
    pub fn next_chunk(&mut self) -> io::Result<&[u8]> {
        let lent = std::mem::take(&mut self.lent);
        self.consume(lent);
        self.advance()?;
        self.lent = self.unread().len();
        Ok(self.unread())
    }

    /// Moves past what is read up: the header, then each step (the next one is read in).
    /// At the end it stays put.
    fn advance(&mut self) -> io::Result<()> {
        if self.in_header && self.at >= self.header.len() {
            (self.in_header, self.at) = (false, 0);
        }
        if !self.in_header && self.at >= self.step_bytes().len() {
            self.refill()?;
        }
        Ok(())
    }

    /// The bytes not read yet where the reader stands: of the header, of the step, or at
    /// the end the pad byte (RIFF pads chunks to even sizes) or nothing.
    fn unread(&self) -> &[u8] {
        if self.in_header {
            return &self.header[self.at..];
        }
        let step = self.step_bytes();
        match (self.at < step.len(), self.pad) {
            (true, _) => &step[self.at..],
            (false, true) => &[0],
            (false, false) => &[],
        }
    }

    /// Counts `n` bytes of [`Self::unread`] as read.
    fn consume(&mut self, n: usize) {
        if self.in_header || self.at < self.step_bytes().len() {
            self.at += n;
        } else if n > 0 {
            self.pad = false;
        }
    }

    /// `n` input frames to output bytes: packed, then the kept channels.
    fn convert(&mut self, n: usize) {
        let in_bpf = self.spec.bytes_per_frame();
        let sample = self.pack.output_format().bytes_per_sample();
        let packed_bpf = sample * usize::from(self.spec.channels);
        let bytes: &[u8] = match self.pack {
            Packing::Copy(_) => &self.input[..n * in_bpf],
            Packing::S24WordsTo3 => {
                self.packed.resize(n * packed_bpf, 0);
                pack_s24_words(&self.input[..n * in_bpf], &mut self.packed);
                &self.packed
            }
        };
        self.out.clear();
        match &self.select {
            None => self.out.extend_from_slice(bytes),
            Some(sel) => {
                self.out.resize(n * sel.len() * sample, 0);
                select_channels(bytes, packed_bpf, sample, sel, &mut self.out);
            }
        }
    }
}

impl Read for ViewReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let lent = std::mem::take(&mut self.lent);
        self.consume(lent);
        self.advance()?;
        let unread = self.unread();
        let n = buf.len().min(unread.len());
        buf[..n].copy_from_slice(&unread[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// A stitched view as an upload body: the job directory it reads, and the SHA-256 the
/// bytes sent must match when one was taken (finalize no longer takes it: empty; the
/// length is checked either way).
#[derive(Clone, Debug)]
pub struct StitchedBody {
    pub dir: PathBuf,
    pub view: StitchedView,
    pub sha256: String,
}

impl UploadBody for StitchedBody {
    fn size(&self) -> io::Result<u64> {
        Ok(self.view.len())
    }

    fn open_at(&self, offset: u64) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(self.view.open_at(&self.dir, offset)?))
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    fn sha256(&self) -> Option<&str> {
        (!self.sha256.is_empty()).then_some(self.sha256.as_str())
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 == 1 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests;
