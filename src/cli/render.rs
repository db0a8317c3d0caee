//! `edgerec render` and the output options `edgerec record` shares with it.

use std::io::IsTerminal;
use std::path::PathBuf;

use edgerec::core::timeline::GapFill;
use edgerec::render::enhance::Enhancement;
use edgerec::render::job::OutputOptions;
use edgerec::roles::render::{self, RenderCmdError};

use super::exit::{self, Failure};

/// How the recording is rendered (the controller's outputCodec, channelMap, ... options).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct OutputArgs {
    /// Output codec: wav, flac or mp3.
    #[arg(long)]
    pub codec: Option<String>,
    /// Channel mode: mono, stereo, mono_to_stereo_mix or multichannel.
    #[arg(long = "channel-mode")]
    pub channel_mode: Option<String>,
    /// Device channels to render, 1-based, in output order (e.g. `3,1`).
    #[arg(long, value_delimiter = ',')]
    pub map: Vec<u16>,
    /// Output sample rate in Hz (resampled when it differs from the capture's).
    #[arg(long = "output-rate")]
    pub output_rate: Option<u32>,
    /// Output bits per sample (WAV 16/24/32, FLAC 16/24).
    #[arg(long)]
    pub bits: Option<u16>,
    /// MP3 bitrate in kbps (the VBR preset nearest it with --vbr); 128 when unset.
    #[arg(long)]
    pub bitrate: Option<u32>,
    /// MP3: variable bitrate.
    #[arg(long)]
    pub vbr: bool,
}

impl OutputArgs {
    pub fn options(&self) -> Result<OutputOptions, Failure> {
        let mut o = OutputOptions {
            output_codec: self.codec.clone(),
            output_bitrate_kbps: self.bitrate,
            output_vbr: self.vbr.then_some(true),
            output_sample_rate: self.output_rate,
            output_bits: self.bits,
            ..Default::default()
        };
        o.set_channels(self.channel_mode.as_deref(), &self.map)
            .map_err(|e| (exit::BAD_CONFIG, e.to_string()))?;
        o.codec().map_err(|e| (exit::BAD_CONFIG, e.to_string()))?;
        Ok(o)
    }
}

#[derive(clap::Args)]
pub struct RenderArgs {
    /// An output directory of `edgerec record` (its newest job), a job directory in one,
    /// or a WAV file.
    pub dir: PathBuf,
    /// The job to render, when DIR holds several.
    #[arg(long)]
    pub job: Option<String>,
    /// Output file (default: `<job dir>/<job id>.<ext>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Channel mode (as --channel-mode).
    #[arg(long)]
    pub channels: Option<String>,
    /// Output sample rate in Hz (as --output-rate).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Join segments back to back instead of filling gaps with silence.
    #[arg(long)]
    pub splice: bool,
    /// Render the enhanced rendition instead (Rakkr's default chain: RNNoise, 80 Hz
    /// high-pass, -16 LUFS).
    #[arg(long)]
    pub enhance: bool,
    /// The enhancement object as a job carries it (implies --enhance), e.g.
    /// '{"gate": {"enabled": true, "thresholdDb": -45}}'.
    #[arg(long)]
    pub enhancement: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl RenderArgs {
    fn enhancement(&self) -> Result<Option<Enhancement>, Failure> {
        let text = match (&self.enhancement, self.enhance) {
            (Some(t), _) => t.as_str(),
            (None, true) => "{}",
            (None, false) => return Ok(None),
        };
        let bad = |e: String| (exit::BAD_CONFIG, format!("--enhancement: {e}"));
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        Enhancement::from_value(&v).map_err(|e| bad(e.to_string()))
    }
}

pub fn run(args: RenderArgs) -> Result<(), Failure> {
    let mut output = args.output.clone();
    output.channel_mode = args.channels.clone().or(output.channel_mode);
    output.output_rate = args.rate.or(output.output_rate);
    let options = output.options()?;
    let enhancement = args.enhancement()?;
    let mut progress = Progress::new();
    let mut update = |done, total| progress.update(done, total);
    let (out, report) = if args.dir.is_file() {
        let codec = options
            .codec()
            .map_err(|e| (exit::BAD_CONFIG, e.to_string()))?;
        let out = args.out.clone().unwrap_or_else(|| {
            args.dir
                .with_extension(format!("render.{}", codec.extension))
        });
        let report =
            render::render_wav_file(&args.dir, &options, enhancement.as_ref(), &out, &mut update)
                .map_err(failure)?;
        (out, report)
    } else {
        let (journal, job) = render::locate(&args.dir, args.job.as_deref()).map_err(failure)?;
        let fill = if args.splice {
            GapFill::Splice
        } else {
            GapFill::Silence
        };
        render::render_job_dir(
            &journal,
            &job,
            &options,
            enhancement.as_ref(),
            args.out.as_deref(),
            fill,
            &mut update,
        )
        .map_err(failure)?
    };
    progress.done();
    println!(
        "{}: {} {} Hz {} ch, {:.3} s, {} bytes, sha256 {}{}",
        out.display(),
        report.codec,
        report.rate,
        report.channels,
        report.duration_seconds,
        report.bytes,
        report.sha256,
        if report.clipped > 0 {
            format!(", {} samples clipped", report.clipped)
        } else {
            String::new()
        }
    );
    Ok(())
}

fn failure(e: RenderCmdError) -> Failure {
    let code = match &e {
        RenderCmdError::NotAJob(_) | RenderCmdError::NoSuchJob(_) => exit::NOT_FOUND,
        RenderCmdError::Options(_) => exit::BAD_CONFIG,
        RenderCmdError::Render(edgerec::render::pipeline::RenderError::Output { .. }) => {
            exit::UNWRITABLE_OUTPUT
        }
        _ => exit::FAILURE,
    };
    (code, e.to_string())
}

/// A bar on a terminal, else a line per 5%.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_percent: u64,
}

impl Progress {
    fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {percent:>3}% {elapsed_precise} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            last_percent: u64::MAX,
        }
    }

    fn update(&mut self, done: u64, total: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
            }
            None => {
                let percent = (done * 100).checked_div(total).unwrap_or(100);
                if percent / 5 != self.last_percent / 5 || self.last_percent == u64::MAX {
                    eprintln!("render: {percent}%");
                    self.last_percent = percent;
                }
            }
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
