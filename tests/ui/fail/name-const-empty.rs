use fnmetrics::measured;

const NAME: &str = "";

#[measured(name = NAME)]
fn lookup() {}

fn main() {
    lookup();
}
