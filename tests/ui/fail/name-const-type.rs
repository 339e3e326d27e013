use fnmetrics::measured;

const NAME: u32 = 7;

#[measured(name = NAME)]
fn lookup() {}

fn main() {
    lookup();
}
