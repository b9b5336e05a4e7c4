//! The CPU's model and the instruction sets that decide what reduced precision buys: AVX2 and
//! FMA (fp32), AVX-512, VNNI (int8 dot products: AVX512-VNNI or AVX-VNNI), AVX512-BF16 and AMX
//! (bf16 and int8 tiles). Read from `/proc/cpuinfo` on Linux; elsewhere from the standard
//! library's feature detection, which knows the stable subset.

use std::sync::OnceLock;

/// What this machine's CPU offers for inference arithmetic.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CpuFeatures {
    /// The model name (`model name` in `/proc/cpuinfo`), when known.
    pub model: Option<String>,
    /// AVX2 (256-bit integer and float vectors).
    pub avx2: bool,
    /// Fused multiply-add.
    pub fma: bool,
    /// AVX-512 Foundation.
    pub avx512f: bool,
    /// AVX512-VNNI: int8 dot products in 512-bit vectors.
    pub avx512_vnni: bool,
    /// AVX-VNNI: int8 dot products in 256-bit vectors (Alder Lake and later).
    pub avx_vnni: bool,
    /// AVX512-BF16: bf16 dot products.
    pub avx512_bf16: bool,
    /// AVX512-FP16: half-precision arithmetic.
    pub avx512_fp16: bool,
    /// AMX with bf16 tiles.
    pub amx_bf16: bool,
    /// AMX with int8 tiles.
    pub amx_int8: bool,
}

impl CpuFeatures {
    /// This machine's, read once per process.
    pub fn detect() -> &'static CpuFeatures {
        static CPU: OnceLock<CpuFeatures> = OnceLock::new();
        CPU.get_or_init(|| match std::fs::read_to_string("/proc/cpuinfo") {
            Ok(text) if text.contains("flags") => CpuFeatures::from_cpuinfo(&text),
            _ => CpuFeatures::from_std(),
        })
    }

    /// Parses the first processor of a `/proc/cpuinfo` text.
    pub fn from_cpuinfo(text: &str) -> CpuFeatures {
        let field = |name: &str| {
            text.lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let flags = field("flags").unwrap_or_default();
        let has = |f: &str| flags.split_whitespace().any(|x| x == f);
        CpuFeatures {
            model: field("model name").filter(|m| !m.is_empty()),
            avx2: has("avx2"),
            fma: has("fma"),
            avx512f: has("avx512f"),
            avx512_vnni: has("avx512_vnni"),
            avx_vnni: has("avx_vnni"),
            avx512_bf16: has("avx512_bf16"),
            avx512_fp16: has("avx512_fp16"),
            amx_bf16: has("amx_bf16"),
            amx_int8: has("amx_int8"),
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn from_std() -> CpuFeatures {
        CpuFeatures {
            model: None,
            avx2: std::arch::is_x86_feature_detected!("avx2"),
            fma: std::arch::is_x86_feature_detected!("fma"),
            avx512f: std::arch::is_x86_feature_detected!("avx512f"),
            avx512_vnni: std::arch::is_x86_feature_detected!("avx512vnni"),
            avx_vnni: false,
            avx512_bf16: std::arch::is_x86_feature_detected!("avx512bf16"),
            avx512_fp16: std::arch::is_x86_feature_detected!("avx512fp16"),
            amx_bf16: false,
            amx_int8: false,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn from_std() -> CpuFeatures {
        CpuFeatures::default()
    }

    /// int8 dot products in one instruction (AVX512-VNNI or AVX-VNNI). Without them, x86 int8
    /// kernels multiply uint8 by int8 with AVX2's `vpmaddubsw`, whose int16 sums of two
    /// products saturate unless weights keep to 7 bits.
    pub fn vnni(&self) -> bool {
        self.avx512_vnni || self.avx_vnni
    }

    /// bf16 arithmetic in hardware (AVX512-BF16 or AMX-BF16).
    pub fn bf16(&self) -> bool {
        self.avx512_bf16 || self.amx_bf16
    }

    /// AMX tiles (bf16 or int8).
    pub fn amx(&self) -> bool {
        self.amx_bf16 || self.amx_int8
    }

    /// The features present, by their usual names.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.avx2, "AVX2"),
            (self.fma, "FMA"),
            (self.avx512f, "AVX-512"),
            (self.avx512_vnni, "AVX512-VNNI"),
            (self.avx_vnni, "AVX-VNNI"),
            (self.avx512_bf16, "AVX512-BF16"),
            (self.avx512_fp16, "AVX512-FP16"),
            (self.amx_bf16, "AMX-BF16"),
            (self.amx_int8, "AMX-INT8"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }

    /// One line: the model, the features present and the deciding ones missing.
    pub fn summary(&self) -> String {
        let mut missing = Vec::new();
        if !self.avx512f {
            missing.push("AVX-512");
        }
        if !self.vnni() {
            missing.push("VNNI");
        }
        if !self.bf16() {
            missing.push("BF16");
        }
        if !self.amx() {
            missing.push("AMX");
        }
        let present = self.names();
        format!(
            "{}: {}{}",
            self.model.as_deref().unwrap_or("unknown CPU"),
            if present.is_empty() {
                "no vector extension known".into()
            } else {
                present.join(", ")
            },
            if missing.is_empty() {
                String::new()
            } else {
                format!(" (no {})", missing.join(", "))
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_flags_are_read_as_the_kernel_names_them() {
        let text = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t\t: fpu avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n\nprocessor\t: 1\n";
        let cpu = CpuFeatures::from_cpuinfo(text);
        assert_eq!(cpu.model.as_deref(), Some("Intel(R) Xeon(R) Platinum 8481C"));
        assert!(cpu.vnni() && cpu.bf16() && cpu.amx() && !cpu.avx_vnni);
        assert_eq!(
            cpu.summary(),
            "Intel(R) Xeon(R) Platinum 8481C: AVX2, FMA, AVX-512, AVX512-VNNI, AVX512-BF16, AMX-BF16, AMX-INT8"
        );
        let amd = CpuFeatures::from_cpuinfo("model name : AMD EPYC 7B13\nflags : avx2 fma\n");
        assert_eq!(amd.summary(), "AMD EPYC 7B13: AVX2, FMA (no AVX-512, VNNI, BF16, AMX)");
        assert!(!amd.vnni());
    }
}
