//! Ticket and catalogue text, read one way: normalisation ([`normalize`]) and the typo lexicon
//! it consults ([`fuzzy`]).
//!
//! The catalogue normalises its phrases as it loads them and the classifier normalises each
//! ticket field the same way, so this is the one piece both use; it depends on neither.

pub mod fuzzy;
pub mod normalize;
