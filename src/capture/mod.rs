//! Frame sources. TODO
