//! MPEG-1 Layer III frames as LAME writes them: the header, the two side-info fields a
//! join needs (`main_data_begin` and the block types), and LAME's CRC-16 (its music and
//! tag CRCs). A [`FrameLog`] follows an encoder's output and keeps a few bytes a frame.

/// Samples per MPEG-1 Layer III frame.
pub const FRAME_SAMPLES: u64 = 1152;

const KBPS: [u16; 16] = [
    0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0,
];
const RATES: [u32; 3] = [44_100, 48_000, 32_000];

/// The bitrate a Layer III bitrate index stands for (0: free or invalid).
pub fn kbps(index: u8) -> u16 {
    KBPS[usize::from(index & 15)]
}

/// What a frame header says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Header {
    pub bitrate_index: u8,
    pub rate: u32,
    pub padding: bool,
    pub protected: bool,
    pub channels: usize,
}

impl Header {
    /// An MPEG-1 Layer III header at the start of `b` (free format and reserved values
    /// refused).
    pub fn parse(b: &[u8]) -> Option<Header> {
        let b = b.get(..4)?;
        if b[0] != 0xFF || b[1] & 0xFE != 0xFA {
            return None; // sync, MPEG-1, Layer III
        }
        let bitrate_index = b[2] >> 4;
        let rate = *RATES.get(usize::from((b[2] >> 2) & 3))?;
        if KBPS[usize::from(bitrate_index)] == 0 {
            return None;
        }
        Some(Header {
            bitrate_index,
            rate,
            padding: b[2] & 2 != 0,
            protected: b[1] & 1 == 0,
            channels: if b[3] >> 6 == 3 { 1 } else { 2 },
        })
    }

    /// Whole frame, header included.
    pub fn len(&self) -> usize {
        Self::len_at(self.bitrate_index, self.rate, self.padding)
    }

    pub fn len_at(bitrate_index: u8, rate: u32, padding: bool) -> usize {
        144_000 * usize::from(KBPS[usize::from(bitrate_index & 15)]) / rate as usize
            + usize::from(padding)
    }

    /// Header, CRC and side info: where the main data (the bit reservoir's bytes) starts.
    pub fn payload_start(&self) -> usize {
        4 + if self.protected { 2 } else { 0 } + if self.channels == 1 { 17 } else { 32 }
    }
}

/// The side-info facts of one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SideInfo {
    /// Bytes of the previous frames' payload this frame's main data starts in.
    pub main_data_begin: u16,
    /// Block type of granule `g`, channel `c` in bits `4g + 2c ..`.
    pub blocks: u8,
}

impl SideInfo {
    pub fn parse(frame: &[u8], h: &Header) -> Option<SideInfo> {
        let mut r = Bits {
            b: frame.get(4 + if h.protected { 2 } else { 0 }..h.payload_start())?,
            at: 0,
        };
        let main_data_begin = r.take(9) as u16;
        r.take(if h.channels == 1 { 5 } else { 3 }); // private bits
        r.take(4 * h.channels); // scfsi
        let mut blocks = 0u8;
        for g in 0..2 {
            for c in 0..h.channels {
                r.take(12 + 9 + 8 + 4); // part2_3_length, big_values, global_gain, sf_compress
                let block = if r.take(1) == 1 {
                    let t = r.take(2);
                    r.take(1 + 10 + 9); // mixed flag, 2 tables, subblock gains
                    t
                } else {
                    r.take(15 + 4 + 3); // 3 tables, region counts
                    0
                };
                r.take(3); // preflag, scalefac_scale, count1table_select
                blocks |= (block as u8) << (4 * g + 2 * c);
            }
        }
        Some(SideInfo {
            main_data_begin,
            blocks,
        })
    }

    /// Granule 1's block types (the half a following frame overlaps).
    pub fn last_granule(&self) -> u8 {
        self.blocks >> 4
    }
}

struct Bits<'a> {
    b: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn take(&mut self, n: usize) -> u32 {
        let mut v = 0;
        for _ in 0..n {
            let byte = self.b.get(self.at / 8).copied().unwrap_or(0);
            v = v << 1 | u32::from(byte >> (7 - self.at % 8) & 1);
            self.at += 1;
        }
        v
    }
}

/// LAME's CRC-16 (polynomial 0x8005, reflected, no final xor): music and tag CRCs.
pub fn crc16(mut crc: u16, bytes: &[u8]) -> u16 {
    for &b in bytes {
        crc = crc >> 8 ^ CRC_TABLE[usize::from((crc ^ u16::from(b)) as u8)];
    }
    crc
}

/// The CRC of each byte value, bit by bit.
const CRC_TABLE: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut x = i as u16;
        let mut k = 0;
        while k < 8 {
            x = if x & 1 != 0 { x >> 1 ^ 0xA001 } else { x >> 1 };
            k += 1;
        }
        t[i] = x;
        i += 1;
    }
    t
};

/// Per frame: what the join and the rewritten tag need.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Frame {
    pub len: u16,
    pub bitrate_index: u8,
    pub side: SideInfo,
}

/// Follows an encoder's byte stream frame by frame.
#[derive(Default)]
pub struct FrameLog {
    pub frames: Vec<Frame>,
    /// Bytes of a frame not complete yet.
    partial: Vec<u8>,
    pub bytes: u64,
    pub protected: bool,
    pub rate: u32,
}

impl FrameLog {
    /// Takes the next bytes of the stream; anything but whole Layer III frames is an error.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            if self.partial.len() < 4 {
                let take = (4 - self.partial.len()).min(bytes.len());
                self.partial.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                continue;
            }
            let h = Header::parse(&self.partial)
                .ok_or_else(|| format!("no MP3 frame header at byte {}", self.bytes))?;
            let take = (h.len() - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() == h.len() {
                self.close(&h)?;
            }
        }
        Ok(())
    }

    fn close(&mut self, h: &Header) -> Result<(), String> {
        let side = SideInfo::parse(&self.partial, h).ok_or("a truncated MP3 side info")?;
        self.frames.push(Frame {
            len: h.len() as u16,
            bitrate_index: h.bitrate_index,
            side,
        });
        self.protected |= h.protected;
        self.rate = h.rate;
        self.bytes += self.partial.len() as u64;
        self.partial.clear();
        Ok(())
    }

    /// Whether the stream ended on a frame boundary.
    pub fn is_whole(&self) -> bool {
        self.partial.is_empty()
    }

    /// Byte offset of frame `i` from the stream's start.
    pub fn offset(&self, i: usize) -> u64 {
        self.frames[..i].iter().map(|f| u64::from(f.len)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_lames_bit_by_bit_crc() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        let bitwise = data.iter().fold(0x1D0Fu16, |crc, &b| {
            let mut x = (crc ^ u16::from(b)) & 0xFF;
            for _ in 0..8 {
                x = if x & 1 != 0 { x >> 1 ^ 0xA001 } else { x >> 1 };
            }
            crc >> 8 ^ x
        });
        assert_eq!(crc16(0x1D0F, &data), bitwise);
        let (a, b) = data.split_at(1234);
        assert_eq!(crc16(crc16(0x1D0F, a), b), bitwise);
    }

    #[test]
    fn headers() {
        // 48 kHz, 128 kbps, no padding, joint stereo, no CRC.
        let h = Header::parse(&[0xFF, 0xFB, 0x94, 0x44]).unwrap();
        assert_eq!(
            (kbps(h.bitrate_index), h.rate, h.len(), h.channels),
            (128, 48_000, 384, 2)
        );
        assert_eq!(h.payload_start(), 36);
        assert!(Header::parse(&[0xFF, 0xF3, 0x94, 0x44]).is_none()); // MPEG-2
        assert!(Header::parse(&[0xFF, 0xFB, 0xF4, 0x44]).is_none()); // bad bitrate
        assert!(Header::parse(&[0xFF, 0xFB]).is_none());
    }
}
