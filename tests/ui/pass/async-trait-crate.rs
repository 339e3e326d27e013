//! `#[async_trait]` methods: the attribute finds the async block `#[async_trait]` made and
//! measures it, whichever of the two attributes comes first.
#![deny(warnings)]

use async_trait::async_trait;
use fnmetrics::measured;

#[async_trait]
trait Repo {
    async fn find(&self, id: u32) -> Result<String, String>;
    async fn count(&mut self) -> usize;
}

struct Users {
    names: Vec<String>,
}

// `#[async_trait]` expands first, `#[measured]` then sees `Box::pin(async move { .. })`.
#[async_trait]
impl Repo for Users {
    #[measured]
    async fn find(&self, id: u32) -> Result<String, String> {
        let name = self.names.get(id as usize).ok_or("no such user")?;
        Ok(name.clone())
    }

    #[measured(name = "async_trait_crate::count")]
    async fn count(&mut self) -> usize {
        self.names.len()
    }
}

struct Teams;

// The whole impl, `#[async_trait]` inside.
#[measured]
#[async_trait]
impl Repo for Teams {
    async fn find(&self, id: u32) -> Result<String, String> {
        if id == 0 {
            return Err("no team 0".to_owned());
        }
        Ok(format!("team {id}"))
    }

    async fn count(&mut self) -> usize {
        0
    }
}

struct Groups;

// The whole impl, `#[async_trait]` outside.
#[async_trait]
#[measured]
impl Repo for Groups {
    async fn find(&self, _id: u32) -> Result<String, String> {
        Err("no groups".to_owned())
    }

    async fn count(&mut self) -> usize {
        0
    }
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

fn main() {
    let mut users = Users {
        names: vec!["ann".to_owned()],
    };
    assert_eq!(
        pollster::block_on(assert_send(users.find(0))).unwrap(),
        "ann"
    );
    assert!(pollster::block_on(users.find(1)).is_err());
    assert_eq!(pollster::block_on(users.count()), 1);
    assert!(pollster::block_on(Teams.find(0)).is_err());
    assert_eq!(pollster::block_on(Teams.find(1)).unwrap(), "team 1");
    assert!(pollster::block_on(Groups.find(1)).is_err());
    let repo: Box<dyn Repo + Send> = Box::new(Teams);
    assert!(pollster::block_on(repo.find(0)).is_err());

    let m = fnmetrics::get(concat!(module_path!(), "::<Users as Repo>::find")).unwrap();
    assert_eq!((m.calls, m.errors), (2, 1));
    assert_eq!(fnmetrics::get("async_trait_crate::count").unwrap().calls, 1);
    let m = fnmetrics::get(concat!(module_path!(), "::<Teams as Repo>::find")).unwrap();
    assert_eq!((m.calls, m.errors), (3, 2));
    let m = fnmetrics::get(concat!(module_path!(), "::<Groups as Repo>::find")).unwrap();
    assert_eq!((m.calls, m.errors), (1, 1));
}
