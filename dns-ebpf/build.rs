//! Link options for the BPF object.
fn main() {
    // Let LLVM (22, in bpf-linker) use word loads and stores at unaligned packet offsets instead
    // of splitting them into bytes: the IP header sits at offset 14, so nearly every header
    // field is unaligned. The kernel accepts unaligned packet and map-value access on
    // architectures with efficient unaligned access (x86-64, arm64), the machines an edge runs on.
    println!("cargo:rustc-link-arg-bins=--cpu-features=+allows-misaligned-mem-access");
}
