//! The test world for akv-csi-provider.

pub mod driver;
pub mod provider;

pub mod ca;
pub mod calls;
pub mod cloud;
pub mod entra;
pub mod fault;
mod front;
pub mod imds;
pub mod jwt;
pub mod keyvault;
pub mod oidc;
pub mod proxy;
pub mod scenario;
pub mod scrape;
mod tasks;
mod wire;
pub mod world;

pub use cloud::Cloud;
pub use fault::Fault;
pub use world::World;
