extern crate proc_macro;
//! x
