use fnmetrics::measured;

struct Repo;

#[measured(name = "repo")]
impl Repo {
    fn load(&self) {}
}

fn main() {
    Repo.load();
}
