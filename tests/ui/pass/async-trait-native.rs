//! Native `async fn` in traits: measured in impls (one method or the whole impl) and in default
//! methods.
#![deny(warnings)]

use fnmetrics::measured;

trait Store {
    async fn load(&self, key: u32) -> Result<String, String>;

    #[measured]
    async fn load_or_default(&self, key: u32) -> String {
        self.load(key).await.unwrap_or_default()
    }
}

struct Memory;

impl Store for Memory {
    #[measured]
    async fn load(&self, key: u32) -> Result<String, String> {
        if key == 0 {
            return Err("missing".to_owned());
        }
        Ok(key.to_string())
    }
}

struct Disk;

#[measured]
impl Store for Disk {
    async fn load(&self, key: u32) -> Result<String, String> {
        Ok(format!("disk {key}"))
    }
}

fn main() {
    assert_eq!(pollster::block_on(Memory.load(1)).unwrap(), "1");
    assert!(pollster::block_on(Memory.load(0)).is_err());
    assert_eq!(pollster::block_on(Memory.load_or_default(0)), "");
    assert_eq!(pollster::block_on(Disk.load(2)).unwrap(), "disk 2");

    let m = fnmetrics::get(concat!(module_path!(), "::<Memory as Store>::load")).unwrap();
    assert_eq!((m.calls, m.errors), (3, 2));
    // The default method is named after the type it was called on.
    let m = fnmetrics::get(concat!(module_path!(), "::<Memory as Store>::load_or_default")).unwrap();
    assert_eq!((m.calls, m.errors), (1, 0));
    let m = fnmetrics::get(concat!(module_path!(), "::<Disk as Store>::load")).unwrap();
    assert_eq!((m.calls, m.errors), (1, 0));
}
