//! Five-point face alignment: a similarity transform (Umeyama, with scale, no reflection)
//! from detected landmarks to the ArcFace 112x112 template, then a bilinear affine warp with
//! border 0. Also the rotation used by the reference's second detection pass.
//!
//! Consumes an RGB image and landmarks in its pixel coordinates; produces [`AlignedFace`].
