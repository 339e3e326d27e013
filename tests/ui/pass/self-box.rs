//! Every kind of receiver: by value, `mut self`, references, `Box<Self>`, `Rc<Self>`,
//! `Pin<&mut Self>`. Methods are named after their `Self` type.
#![deny(warnings)]

use fnmetrics::measured;
use std::pin::Pin;
use std::rc::Rc;

#[derive(Clone)]
struct Node {
    value: u32,
}

impl Node {
    #[measured]
    fn into_value(self) -> u32 {
        self.value
    }

    #[measured]
    fn bumped(mut self) -> Self {
        self.value += 1;
        self
    }

    #[measured]
    fn get(&self) -> u32 {
        self.value
    }

    #[measured]
    fn set(&mut self, value: u32) {
        self.value = value;
    }

    #[measured]
    fn unbox(self: Box<Self>) -> Self {
        *self
    }

    #[measured]
    fn shared(self: Rc<Self>) -> u32 {
        self.value
    }

    #[measured]
    fn pinned(self: Pin<&mut Self>) -> u32 {
        self.get_mut().value
    }
}

trait Describe {
    fn describe(self: Box<Self>) -> String;
}

impl Describe for Node {
    #[measured]
    fn describe(self: Box<Self>) -> String {
        format!("node {}", self.value)
    }
}

fn main() {
    let node = Node { value: 1 };
    assert_eq!(node.clone().into_value(), 1);
    let mut node = node.bumped();
    assert_eq!(node.get(), 2);
    node.set(3);
    let node = Box::new(node).unbox();
    assert_eq!(Rc::new(node.clone()).shared(), 3);
    let mut pinned = node.clone();
    assert_eq!(Pin::new(&mut pinned).pinned(), 3);
    assert_eq!(Box::new(node).describe(), "node 3");

    for method in [
        "into_value",
        "bumped",
        "get",
        "set",
        "unbox",
        "shared",
        "pinned",
    ] {
        let name = format!("{}::Node::{method}", module_path!());
        assert_eq!(fnmetrics::get(&name).map(|m| m.calls), Some(1), "{name}");
    }
    let describe = concat!(module_path!(), "::<Node as Describe>::describe");
    assert_eq!(fnmetrics::get(describe).map(|m| m.calls), Some(1));
}
