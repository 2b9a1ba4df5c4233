//! GestaltMatcher Database (GMDB) reference files: what researchers with GMDB access bring.
//!
//! Consumes the reference's data files: the encodings CSV, image lists, the syndromes TSV and
//! gene metadata ([`reference`], [`genes`]); produces typed tables, and from them a gallery
//! ([`import`]: reference models mapped to bundle embedders by name). Errors in the files are
//! [`crate::Error::Gallery`] (exit code 6) naming the file and line. `eval` reads the same
//! tables for the paper's protocol.

pub mod genes;
pub mod import;
pub mod reference;
