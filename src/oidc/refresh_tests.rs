//! Tests of `refresh.rs`: when to refresh, the single flight, the shared-lock hook.

use super::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::session::server::Ticket;

const NOW: i64 = 1_800_000_000;

fn policy() -> RefreshPolicy {
    RefreshPolicy {
        margin: 60,
        interval: None,
        enabled: true,
        keep_after_expiry: false,
    }
}

/// Logged in at NOW, session for 8h, tokens for 5 min, with a refresh token.
fn session() -> Session {
    Session {
        id: "sid".into(),
        user: "alice".into(),
        created_at: NOW,
        expires_at: NOW + 8 * 3600,
        refresh_token: Some("rt-1".into()),
        tokens_expire_at: Some(NOW + 300),
        ..Session::anonymous()
    }
}

#[test]
fn refresh_within_the_margin_of_expiry() {
    let s = session();
    let p = policy();
    assert_eq!(due(&s, NOW, &p), Due::Fresh);
    assert_eq!(due(&s, NOW + 239, &p), Due::Fresh);
    assert_eq!(due(&s, NOW + 240, &p), Due::Refresh, "60 s before expiry");
    assert_eq!(due(&s, NOW + 300, &p), Due::Refresh, "at expiry");
    assert_eq!(due(&s, NOW + 4000, &p), Due::Refresh, "long after expiry");
}

#[test]
fn interval_refreshes_even_long_lived_tokens() {
    let mut s = session();
    s.tokens_expire_at = Some(NOW + 24 * 3600);
    let mut p = policy();
    assert_eq!(due(&s, NOW + 3600, &p), Due::Fresh);
    p.interval = Some(1800);
    assert_eq!(due(&s, NOW + 1799, &p), Due::Fresh);
    assert_eq!(due(&s, NOW + 1800, &p), Due::Refresh);
    // Counted from the last refresh, not from the login.
    s.refreshed_at = NOW + 1800;
    assert_eq!(due(&s, NOW + 1900, &p), Due::Fresh);
    assert_eq!(due(&s, NOW + 3600, &p), Due::Refresh);
}

#[test]
fn margin_is_capped_at_half_the_token_lifetime() {
    let mut s = session();
    s.tokens_expire_at = Some(NOW + 60);
    let mut p = policy();
    p.margin = 3600; // longer than the tokens live: would refresh on every check
    assert_eq!(due(&s, NOW + 29, &p), Due::Fresh);
    assert_eq!(due(&s, NOW + 30, &p), Due::Refresh);
}

#[test]
fn tokens_that_outlive_the_session_are_not_refreshed() {
    let mut s = session();
    s.expires_at = NOW + 200; // the session ends before the tokens do
    assert_eq!(due(&s, NOW + 250, &policy()), Due::Fresh);
}

#[test]
fn expired_tokens_without_refresh_token_end_the_session() {
    let mut s = session();
    s.refresh_token = None;
    let mut p = policy();
    assert_eq!(due(&s, NOW + 299, &p), Due::Fresh);
    assert_eq!(due(&s, NOW + 300, &p), Due::Expired);
    p.keep_after_expiry = true;
    assert_eq!(due(&s, NOW + 300, &p), Due::Fresh, "configured to keep");
    // Refresh turned off: the stored refresh token is not used.
    let s = session();
    let mut p = policy();
    p.enabled = false;
    assert_eq!(due(&s, NOW + 300, &p), Due::Expired);
    // Unknown token expiry: nothing to go by.
    let mut s = session();
    s.refresh_token = None;
    s.tokens_expire_at = None;
    assert_eq!(due(&s, NOW + 7 * 3600, &policy()), Due::Fresh);
}

#[test]
fn tokens_expire_with_the_first_of_access_and_id_token() {
    assert_eq!(
        tokens_expire_at(NOW, Some(Duration::from_secs(60)), Some(NOW + 3600)),
        Some(NOW + 60)
    );
    assert_eq!(
        tokens_expire_at(NOW, Some(Duration::from_secs(3600)), Some(NOW + 300)),
        Some(NOW + 300)
    );
    assert_eq!(
        tokens_expire_at(NOW, Some(Duration::from_secs(60)), None),
        Some(NOW + 60)
    );
    assert_eq!(
        tokens_expire_at(NOW, None, Some(NOW + 3600)),
        Some(NOW + 3600)
    );
    assert_eq!(tokens_expire_at(NOW, None, None), None);
}

/// What the refresh fields cost in the cookie: an opaque refresh token (oidc-provider,
/// Okta: 43 characters) plus the expiry and refresh time.
#[test]
fn refresh_fields_cost_little_cookie() {
    use crate::session::cookie::{CookieCodec, CookieKey};
    let codec = CookieCodec::new(&CookieKey::generate(), &[]);
    let mut s = session();
    s.email = "alice@example.com".into();
    s.id_token = Some("x".repeat(900));
    let plain = Session {
        refresh_token: None,
        tokens_expire_at: None,
        ..s.clone()
    };
    s.refresh_token = Some("r".repeat(43));
    s.refreshed_at = NOW + 250;
    let len = |s: &Session| codec.seal("_portcullis", s).expect("seal").len();
    let extra = len(&s) - len(&plain);
    assert!(extra <= 120, "refresh fields add {extra} bytes");
}

fn refreshed(s: &Session, rt: &str) -> Flight {
    let mut n = s.clone();
    n.refresh_token = Some(rt.into());
    n.tokens_expire_at = s.tokens_expire_at.map(|t| t + 300);
    Flight::Refreshed(Arc::new(n))
}

#[tokio::test]
async fn fifty_concurrent_checks_make_one_refresh() {
    let r = Arc::new(Refresher::new(Duration::from_secs(5), None));
    let calls = Arc::new(AtomicUsize::new(0));
    let s = session();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (r, calls, s) = (r.clone(), calls.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            r.single_flight(&s, None, move |s| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                refreshed(&s, "rt-2")
            })
            .await
        }));
    }
    let mut leaders = 0;
    for t in tasks {
        let (flight, role) = t.await.expect("join").expect("answered");
        assert!(
            matches!(flight, Flight::Refreshed(ref n) if n.refresh_token.as_deref() == Some("rt-2"))
        );
        leaders += usize::from(role == Role::Leader);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(leaders, 1);
    // A late check with the old cookie reuses the result instead of replaying rt-1.
    let calls2 = calls.clone();
    let (late, role) = r
        .single_flight(&s, None, move |s| async move {
            calls2.fetch_add(1, Ordering::SeqCst);
            refreshed(&s, "rt-3")
        })
        .await
        .expect("answered");
    assert_eq!(role, Role::Joined);
    assert!(matches!(late, Flight::Refreshed(ref n) if n.refresh_token.as_deref() == Some("rt-2")));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The refreshed session's next refresh is a new flight.
    let mut next = s.clone();
    next.refresh_token = Some("rt-2".into());
    let (f, role) = r
        .single_flight(&next, None, |s| async move { refreshed(&s, "rt-3") })
        .await
        .expect("answered");
    assert_eq!(role, Role::Leader);
    assert!(matches!(f, Flight::Refreshed(ref n) if n.refresh_token.as_deref() == Some("rt-3")));
}

#[tokio::test]
async fn waiting_is_bounded() {
    let r = Refresher::new(Duration::from_millis(50), None);
    let answer = r
        .single_flight(&session(), None, |s| async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            refreshed(&s, "never")
        })
        .await;
    assert!(answer.is_none());
}

/// Two replicas (two `Refresher`s) sharing a lock and a store: one refresh between them.
#[tokio::test]
async fn a_shared_lock_makes_one_refresh_across_replicas() {
    #[derive(Default)]
    struct Shared {
        held: Mutex<bool>,
        store: Mutex<HashMap<String, Session>>,
    }
    struct Lock(Arc<Shared>);
    impl RefreshLock for Lock {
        fn acquire(&self, _key: String, _ttl: Duration) -> BoxFuture<'static, Result<bool, Error>> {
            let shared = self.0.clone();
            Box::pin(async move {
                loop {
                    {
                        let mut held = shared.held.lock().expect("held");
                        if !*held {
                            *held = true;
                            return Ok(true);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        }
        fn release(&self, _key: String) -> BoxFuture<'static, ()> {
            let shared = self.0.clone();
            Box::pin(async move {
                *shared.held.lock().expect("held") = false;
            })
        }
        fn reload(
            &self,
            session: Session,
            _ticket: Option<Ticket>,
        ) -> BoxFuture<'static, Result<Option<Session>, Error>> {
            let shared = self.0.clone();
            Box::pin(async move {
                Ok(shared
                    .store
                    .lock()
                    .expect("store")
                    .get(&session.id)
                    .cloned())
            })
        }
        fn store(
            &self,
            session: Arc<Session>,
            _ticket: Option<Ticket>,
        ) -> BoxFuture<'static, Result<(), Error>> {
            let shared = self.0.clone();
            Box::pin(async move {
                shared
                    .store
                    .lock()
                    .expect("store")
                    .insert(session.id.clone(), Session::clone(&session));
                Ok(())
            })
        }
    }
    let shared = Arc::new(Shared::default());
    let s = session();
    shared
        .store
        .lock()
        .expect("store")
        .insert(s.id.clone(), s.clone());
    let a = Refresher::new(Duration::from_secs(5), Some(Arc::new(Lock(shared.clone()))));
    let b = Refresher::new(Duration::from_secs(5), Some(Arc::new(Lock(shared.clone()))));
    let calls = Arc::new(AtomicUsize::new(0));
    // The exchange does not write the store: the lock's `store` does, before release.
    let exchange = |calls: Arc<AtomicUsize>| {
        move |s: Session| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            // Slow, so the other replica really waits on the lock.
            tokio::time::sleep(Duration::from_millis(50)).await;
            refreshed(&s, "rt-2")
        }
    };
    let (fa, fb) = tokio::join!(
        a.single_flight(&s, None, exchange(calls.clone())),
        b.single_flight(&s, None, exchange(calls.clone())),
    );
    let (mut refreshed_here, mut reloaded) = (0, 0);
    for (f, _) in [fa.expect("a"), fb.expect("b")] {
        match f {
            Flight::Refreshed(n) if n.refresh_token.as_deref() == Some("rt-2") => {
                refreshed_here += 1
            }
            Flight::Reloaded(n) if n.refresh_token.as_deref() == Some("rt-2") => reloaded += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((refreshed_here, reloaded), (1, 1));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the second replica reloaded instead"
    );
}
