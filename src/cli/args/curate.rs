//! Arguments of the gallery curation commands (`gallery remove | relabel | list`), beside
//! the other clap structs of [`super`].

use std::path::PathBuf;

use super::LockArgs;

/// Arguments of `gallery remove`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["subject", "image"])))]
pub struct RemoveArgs {
    /// Gallery file (rewritten atomically, revision + 1).
    #[arg(long, value_name = "FILE")]
    pub gallery: PathBuf,
    /// Remove every image of this subject (patient): embeddings, ids and name leave the file.
    #[arg(long, value_name = "ID")]
    pub subject: Option<String>,
    /// Remove this one image.
    #[arg(long, value_name = "ID")]
    pub image: Option<String>,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// Arguments of `gallery relabel`.
#[derive(Debug, clap::Args)]
pub struct RelabelArgs {
    /// Gallery file (rewritten atomically, revision + 1).
    #[arg(long, value_name = "FILE")]
    pub gallery: PathBuf,
    /// The subject (patient) whose diagnosis changed; all its images are relabelled.
    #[arg(long, value_name = "ID")]
    pub subject: String,
    /// The new syndrome name (an existing one, or a new one).
    #[arg(long, value_name = "NAME")]
    pub label: String,
    /// OMIM number of the label; must match the gallery's when the label exists.
    #[arg(long, value_name = "N")]
    pub omim: Option<u32>,
    /// The confirmed gene (replaces the images' genes; without it they keep theirs).
    #[arg(long, value_name = "SYMBOL")]
    pub gene: Option<String>,
    /// Entrez id of --gene.
    #[arg(long, value_name = "N", requires = "gene")]
    pub entrez: Option<u32>,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// Arguments of `gallery list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Gallery file.
    #[arg(long, value_name = "FILE")]
    pub gallery: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
