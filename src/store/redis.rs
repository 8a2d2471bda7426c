//! placeholder
#![allow(missing_docs, clippy::unused_async, unused_variables)]
use super::*;
use alloy_primitives::B256;
#[derive(Debug, Default)]
pub struct RedisStore;
impl RedisStore {
    pub async fn connect(
        url: &str,
        prefix: &str,
        t: std::time::Duration,
        ttl: std::time::Duration,
    ) -> Result<Self, StoreError> {
        Ok(Self)
    }
    pub async fn reserve(&self, r: &Reservation<'_>) -> Result<Reserved, StoreError> {
        Ok(Reserved::Charged)
    }
    pub async fn commit(&self, op: B256) -> Result<(), StoreError> {
        Ok(())
    }
    pub async fn refund(&self, op: B256) -> Result<bool, StoreError> {
        Ok(false)
    }
    pub async fn usage(&self, counters: &[(String, Window)], now: u64) -> Result<Vec<Usage>, StoreError> {
        Ok(vec![])
    }
    pub async fn revoked(&self, guards: &[String]) -> Result<Option<usize>, StoreError> {
        Ok(None)
    }
    pub async fn revoke(&self, guard: &str, now: u64) -> Result<(), StoreError> {
        Ok(())
    }
    pub async fn unrevoke(&self, guard: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    pub async fn list_revoked(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(vec![])
    }
    pub async fn put_permission(&self, key: &str, value: &str) -> Result<(), StoreError> {
        Ok(())
    }
    pub async fn get_permission(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    pub async fn delete_permission(&self, key: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    pub async fn version(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
