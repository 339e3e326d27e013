use fnmetrics::measured;

#[measured(sample = 0)]
fn never_timed() {}

#[measured(sample = 2000000)]
fn too_rare() {}

#[measured(sample = "64")]
fn not_a_number() {}

fn main() {
    never_timed();
    too_rare();
    not_a_number();
}
