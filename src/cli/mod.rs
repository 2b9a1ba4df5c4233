//! The binary's commands: each turns validated arguments into library calls and prints the
//! result. Only this layer writes to stdout and stderr.

pub mod args;
mod cmd;
mod resolve;

use std::path::Path;

use gestalt_edge::bundle::{Bundle, LoadOptions};
use gestalt_edge::capture::Limits;
use gestalt_edge::detect::FaceChoice;
use gestalt_edge::pipeline::PipelineOptions;
use gestalt_edge::{Error, Result};

use args::{AnalyseArgs, Cli, Command, FaceArg, GalleryCommand};

/// Runs one command; returns the exit code for a run that got to the end (a batch with
/// failed photos returns the first failure's code).
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Predict(a) => cmd::predict::run(a),
        Command::Gallery(GalleryCommand::Build(a)) => cmd::gallery::build(a),
        Command::Gallery(GalleryCommand::Add(a)) => cmd::gallery::add(a),
        Command::Gallery(GalleryCommand::Inspect(a)) => cmd::gallery::inspect(a),
        Command::Gallery(GalleryCommand::Import(a)) => cmd::import::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Model(c) => cmd::model::run(c),
        Command::Sign(a) => cmd::sign::run(a),
    }
}

/// The trusted public key named by `--public-key`, if any.
pub fn public_key(a: &AnalyseArgs) -> Result<Option<gestalt_edge::sign::PublicKey>> {
    a.public_key
        .as_deref()
        .map(gestalt_edge::sign::read_public_key)
        .transpose()
}

/// Reads a gallery with the size limit, and its signature when `--public-key` is given.
pub fn read_gallery(path: &Path, a: &AnalyseArgs) -> Result<gestalt_edge::gallery::Gallery> {
    let options = gestalt_edge::gallery::io::ReadOptions {
        public_key: public_key(a)?,
        ..Default::default()
    };
    gestalt_edge::gallery::Gallery::read_checked(path, &options)
}

/// The resolved settings for analysing photos.
pub struct Analyser {
    pub bundle: Bundle,
    pub pipeline: PipelineOptions,
    pub limits: Limits,
    /// Worker threads (embedding passes, gallery search).
    pub threads: usize,
}

impl Analyser {
    pub fn new(a: &AnalyseArgs) -> Result<Analyser> {
        if !(a.max_megapixels.is_finite() && a.max_megapixels > 0.0) {
            return Err(Error::Usage(
                "--max-megapixels must be a positive number".into(),
            ));
        }
        let threads = match a.threads {
            Some(0) => return Err(Error::Usage("--threads must be at least 1".into())),
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        let bundle = Bundle::load_checked(
            &a.bundle,
            LoadOptions {
                threads,
                engine: a.engine.backend()?,
                cache_dir: a.cache.resolve(),
            },
            public_key(a)?.as_ref(),
        )?;
        cmd::compile::warn(&bundle);
        gestalt_edge::bundle::release_freed_memory();
        let pipeline = PipelineOptions {
            face_choice: match a.face {
                FaceArg::Best => FaceChoice::HighestScore,
                FaceArg::Largest => FaceChoice::Largest,
            },
            two_pass: !a.single_pass,
            ..PipelineOptions::default()
        };
        let limits = Limits {
            max_pixels: (a.max_megapixels * 1e6) as u64,
            ..Limits::default()
        };
        Ok(Analyser {
            bundle,
            pipeline,
            limits,
            threads,
        })
    }

    /// Decodes and analyses one photo.
    pub fn analyse(&self, path: &Path) -> Result<gestalt_edge::pipeline::FaceAnalysis> {
        let frame = gestalt_edge::capture::load_image(path, &self.limits)?;
        gestalt_edge::pipeline::analyse(&self.bundle, &frame, &self.pipeline)
    }
}
