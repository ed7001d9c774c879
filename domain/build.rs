// The migrations are embedded at compile time: rebuild when they change
// (embed_migrations! alone does not tell cargo about edited SQL files).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
