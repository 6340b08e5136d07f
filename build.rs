//! Rebuilds when a migration is added or changed: sqlx embeds `migrations/` at compile time.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
