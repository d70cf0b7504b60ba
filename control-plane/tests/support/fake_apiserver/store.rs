//! The object store: JSON patches, writes with resourceVersions and generations, the watch
//! log, finalizers and owner-reference garbage collection.

use serde_json::{Value, json};

use super::*;

/// RFC 7386 JSON merge patch.
pub(super) fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

pub(super) fn without_meta_and_status(v: &Value) -> Value {
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

pub(super) fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    v
}

pub(super) fn finalizers_empty(v: &Value) -> bool {
    v["metadata"]["finalizers"]
        .as_array()
        .is_none_or(|f| f.is_empty())
}

// ---------------------------------------------------------------------------------------
// The store

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store {
    pub(super) fn commit(
        &mut self,
        tx: &broadcast::Sender<Change>,
        key: &Key,
        old: Option<Value>,
        new: Option<Value>,
    ) -> Option<Value> {
        self.rv += 1;
        let rv = self.rv.to_string();
        let mut new = new;
        match &mut new {
            Some(obj) => {
                obj["metadata"]["resourceVersion"] = json!(rv);
                self.objects.insert(key.clone(), obj.clone());
            }
            None => {
                self.objects.remove(key);
            }
        }
        let change = Change {
            rv: self.rv,
            resource: key.0.clone(),
            namespace: key.1.clone(),
            old: old.clone(),
            new: new.clone(),
        };
        self.log.push(change.clone());
        let _ = tx.send(change);
        new
    }

    /// Deletes an object (or marks it while finalizers remain) and collects its dependents.
    pub(super) fn delete(&mut self, tx: &broadcast::Sender<Change>, key: &Key) -> Option<Value> {
        let old = self.objects.get(key)?.clone();
        if !finalizers_empty(&old) {
            if old["metadata"]["deletionTimestamp"].is_null() {
                let mut marked = old.clone();
                marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                return self.commit(tx, key, Some(old), Some(marked));
            }
            return Some(old);
        }
        self.remove(tx, key, old.clone());
        Some(old)
    }

    pub(super) fn remove(&mut self, tx: &broadcast::Sender<Change>, key: &Key, old: Value) {
        self.commit(tx, key, Some(old.clone()), None);
        let Some(uid) = old["metadata"]["uid"].as_str().map(str::to_owned) else {
            return;
        };
        let dependents: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid.as_str()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for dep in dependents {
            self.delete(tx, &dep);
        }
    }

    pub(super) fn create(
        &mut self,
        tx: &broadcast::Sender<Change>,
        key: &Key,
        target: &Target,
        mut obj: Value,
    ) -> ApiResult<Value> {
        if self.objects.contains_key(key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} {:?} already exists", target.plural, key.2),
            ));
        }
        let kind = kind_of(&target.plural)
            .ok_or_else(|| ApiError::new(404, "NotFound", "unknown resource"))?;
        self.uid += 1;
        obj["apiVersion"] = json!(target.api_version);
        obj["kind"] = json!(kind.kind);
        let meta = &mut obj["metadata"];
        meta["name"] = json!(key.2);
        if kind.namespaced {
            meta["namespace"] = json!(key.1);
        }
        meta["uid"] = json!(format!("uid-{}", self.uid));
        meta["creationTimestamp"] = json!(now_rfc3339());
        meta["generation"] = json!(1);
        if let Some(m) = meta.as_object_mut() {
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
        }
        Ok(self.commit(tx, key, None, Some(obj)).unwrap_or(Value::Null))
    }

    /// Stores `next` as the new state of an existing object, keeping server-owned fields.
    pub(super) fn update(
        &mut self,
        tx: &broadcast::Sender<Change>,
        key: &Key,
        target: &Target,
        old: Value,
        mut next: Value,
    ) -> Value {
        let kind = kind_of(&target.plural);
        let status_only = target.subresource.as_deref() == Some("status");
        if status_only {
            let status = next["status"].clone();
            next = old.clone();
            next["status"] = status;
        } else if kind.is_some_and(|k| k.status_subresource) {
            next["status"] = old["status"].clone();
            if next["status"].is_null()
                && let Some(m) = next.as_object_mut()
            {
                m.remove("status");
            }
        }
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "name",
            "namespace",
        ] {
            match old["metadata"].get(field) {
                Some(v) => next["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = next["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        next["apiVersion"] = old["apiVersion"].clone();
        next["kind"] = old["kind"].clone();
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let bump = !status_only && without_meta_and_status(&old) != without_meta_and_status(&next);
        next["metadata"]["generation"] = json!(if bump { generation + 1 } else { generation });
        if comparable(&old) == comparable(&next) {
            return old;
        }
        if !old["metadata"]["deletionTimestamp"].is_null() && finalizers_empty(&next) {
            self.remove(tx, key, next.clone());
            return next;
        }
        self.commit(tx, key, Some(old), Some(next))
            .unwrap_or(Value::Null)
    }
}

pub(super) fn record_manager(obj: &mut Value, manager: Option<&str>, operation: &str) {
    let Some(manager) = manager else { return };
    let entry = json!({
        "manager": manager, "operation": operation, "apiVersion": obj["apiVersion"].clone(),
        "fieldsType": "FieldsV1", "time": now_rfc3339(),
    });
    let fields = &mut obj["metadata"]["managedFields"];
    if !fields.is_array() {
        *fields = json!([]);
    }
    if let Some(list) = fields.as_array_mut() {
        list.retain(|e| !(e["manager"] == manager && e["operation"] == operation));
        list.push(entry);
    }
}
