use fnmetrics::measured;

trait Store {
    #[measured]
    fn load(&self) -> u32;
}

fn main() {}
