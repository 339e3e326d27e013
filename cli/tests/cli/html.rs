//! `fnmetrics html`: written later in this branch.
