use fnmetrics::measured;

// 301 bytes: the limit is 256.
#[measured(
    name = "a_name_that_goes_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_\
            and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_\
            and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_\
            and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on_too_long"
)]
fn lookup() {}

fn main() {
    lookup();
}
