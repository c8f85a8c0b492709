//! PLACEHOLDER (replaced by the inventory work).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DetectedGpu {
    pub model: String,
    pub mem_bytes: u64,
}
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Detected {
    pub cpu_millis: u64,
    pub cpu_model: Option<String>,
    pub mem_bytes: u64,
    pub disk_total_bytes: u64,
    pub disk_free_bytes: u64,
    pub gpus: Vec<DetectedGpu>,
}
pub fn detect(_data_dir: &std::path::Path) -> Detected {
    Detected {
        cpu_millis: 2000,
        cpu_model: None,
        mem_bytes: 1 << 34,
        disk_total_bytes: 1 << 40,
        disk_free_bytes: 1 << 39,
        gpus: vec![],
    }
}
