use fnmetrics::measured;

#[measured]
#[measured(name = "again")]
fn lookup() {}

fn main() {
    lookup();
}
