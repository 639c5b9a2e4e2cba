//! The engine without HTTP: scripted steps, no database access.

use std::sync::Mutex;

use super::*;
use crate::store::{Database, DieselStore};

/// A step that reports a fixed outcome and counts its runs.
struct Scripted {
    interactive: bool,
    outcome: StepOutcome,
    runs: std::sync::Arc<Mutex<u32>>,
}

fn scripted(interactive: bool, outcome: StepOutcome) -> (Scripted, std::sync::Arc<Mutex<u32>>) {
    let runs = std::sync::Arc::new(Mutex::new(0));
    (
        Scripted {
            interactive,
            outcome,
            runs: runs.clone(),
        },
        runs,
    )
}

impl Step for Scripted {
    fn is_interactive(&self) -> bool {
        self.interactive
    }
    fn run(
        &self,
        ctx: &mut StepContext<'_>,
        _: Option<&UserId>,
    ) -> Result<StepOutcome, StoreError> {
        if self.interactive {
            ctx.credentials.take();
        }
        *self.runs.lock().unwrap() += 1;
        Ok(self.outcome.clone())
    }
}

fn uid(n: i64) -> UserId {
    UserId::from(n)
}

fn ok(user: i64, activate: &[StepId]) -> StepOutcome {
    StepOutcome::Success {
        user: uid(user),
        activate: activate.to_vec(),
    }
}

fn with_ctx<T>(credentials: bool, f: impl FnOnce(&mut StepContext<'_>) -> T) -> T {
    // The scripted steps never touch the stores; the pool never connects.
    let stores = Stores::new(
        DieselStore::new(
            Database::connect_lazy("sqlite:///nonexistent/never-opened.db", 1).unwrap(),
        ),
        Victims,
    );
    let config = crate::RememberMeConfig::default();
    let client = ClientInfo::default();
    let mut ctx = StepContext::new(&stores, &config, 0, &client);
    ctx.credentials = credentials.then(|| Credentials {
        username: "u".into(),
        password: "p".into(),
        remember_me: false,
        ..Credentials::default()
    });
    f(&mut ctx)
}

#[test]
fn a_step_is_skipped_when_its_skip_condition_holds() {
    let (first, _) = scripted(false, ok(7, &[]));
    let (second, second_runs) = scripted(true, ok(7, &[]));
    let flow = Flow::new(FlowKind::Login)
        .step(StepDef::new("a", first).tags_on_success([Tag::WEAK_AUTHENTICATION]))
        .step(
            StepDef::new("b", second)
                .skip_if(Condition::has(Tag::WEAK_AUTHENTICATION))
                .tags_on_success([Tag::PASSWORD_VERIFIED]),
        );
    let mut state = flow.start(None);
    let progress = with_ctx(false, |ctx| flow.advance(&mut state, ctx)).unwrap();
    assert_eq!(
        progress,
        Progress::Complete {
            user: uid(7),
            tags: [Tag::WEAK_AUTHENTICATION].into()
        }
    );
    assert_eq!(
        *second_runs.lock().unwrap(),
        0,
        "the skipped step must not run"
    );
}

#[test]
fn an_unmet_precondition_refuses_the_flow_and_the_step_does_not_run() {
    let (activator, _) = scripted(false, ok(7, &["issue"]));
    let (issuer, issuer_runs) = scripted(false, ok(7, &[]));
    let flow = Flow::new(FlowKind::Login)
        .step(StepDef::new("id", activator).tags_on_success([Tag::WEAK_AUTHENTICATION]))
        .step(
            StepDef::new("issue", issuer)
                .only_when_activated()
                .precondition(Condition::has(Tag::PASSWORD_VERIFIED)),
        );
    let mut state = flow.start(None);
    let progress = with_ctx(false, |ctx| flow.advance(&mut state, ctx)).unwrap();
    assert_eq!(
        progress,
        Progress::Refused {
            step: "issue",
            missing: vec![Tag::PASSWORD_VERIFIED]
        }
    );
    assert_eq!(*issuer_runs.lock().unwrap(), 0);
}

#[test]
fn a_step_needing_activation_runs_only_when_activated() {
    for activate in [true, false] {
        let list: &[StepId] = if activate { &["c"] } else { &[] };
        let (first, _) = scripted(false, ok(3, list));
        let (third, third_runs) = scripted(false, ok(3, &[]));
        let flow = Flow::new(FlowKind::Login)
            .step(StepDef::new("a", first).tags_on_success([Tag::PASSWORD_VERIFIED]))
            .step(StepDef::new("c", third).only_when_activated());
        let mut state = flow.start(None);
        let progress = with_ctx(false, |ctx| flow.advance(&mut state, ctx)).unwrap();
        assert!(matches!(progress, Progress::Complete { ref user, .. } if *user == uid(3)));
        assert_eq!(*third_runs.lock().unwrap(), u32::from(activate));
    }
}

#[test]
fn an_interactive_step_pauses_until_input_and_resumes_from_the_kept_state() {
    let (identify, _) = scripted(false, StepOutcome::NotApplicable);
    let (password, password_runs) = scripted(true, ok(9, &[]));
    let flow = Flow::new(FlowKind::Login)
        .step(StepDef::new("id", identify))
        .step(StepDef::new("pw", password).tags_on_success([Tag::PASSWORD_VERIFIED]));
    let mut state = flow.start(None);
    let progress = with_ctx(false, |ctx| flow.advance(&mut state, ctx)).unwrap();
    assert_eq!(progress, Progress::NeedsInput { step: "pw" });
    assert_eq!(*password_runs.lock().unwrap(), 0);

    // The state survives a round trip through the session's serialization.
    let json = serde_json::to_string(&state).unwrap();
    let mut state: FlowState = serde_json::from_str(&json).unwrap();
    let progress = with_ctx(true, |ctx| flow.advance(&mut state, ctx)).unwrap();
    assert!(matches!(progress, Progress::Complete { ref user, .. } if *user == uid(9)));
}

#[test]
fn a_flow_whose_steps_are_all_skipped_completes_for_the_known_user_without_running_any() {
    let (password, runs) = scripted(true, ok(5, &[]));
    let (issue, issue_runs) = scripted(false, ok(5, &[]));
    let flow = Flow::new(FlowKind::StepUp)
        .step(StepDef::new("pw", password).skip_if(Condition::has(Tag::PASSWORD_VERIFIED)))
        .step(StepDef::new("issue", issue).only_when_activated());
    let tags = [Tag::WEAK_AUTHENTICATION, Tag::PASSWORD_VERIFIED].into();
    let mut state = flow.start(Some((uid(5), &tags)));
    let progress = with_ctx(false, |ctx| flow.advance(&mut state, ctx)).unwrap();
    assert_eq!(progress, Progress::Complete { user: uid(5), tags });
    assert_eq!(*runs.lock().unwrap() + *issue_runs.lock().unwrap(), 0);
}

#[test]
fn a_flow_whose_steps_are_all_skipped_with_nobody_identified_signs_nobody_in() {
    let (identify, _) = scripted(false, StepOutcome::NotApplicable);
    let flow = Flow::new(FlowKind::Login).step(StepDef::new("id", identify));
    let mut state = flow.start(None);
    let progress = with_ctx(false, |ctx| flow.advance(&mut state, ctx)).unwrap();
    assert!(!matches!(progress, Progress::Complete { .. }));
}

#[test]
fn a_failing_step_ends_the_flow_and_a_different_user_is_refused() {
    let (pw, _) = scripted(true, StepOutcome::Failed(Failure::InvalidCredentials));
    let flow = Flow::new(FlowKind::Login).step(StepDef::new("pw", pw));
    let mut state = flow.start(None);
    let progress = with_ctx(true, |ctx| flow.advance(&mut state, ctx)).unwrap();
    assert_eq!(
        progress,
        Progress::Failed {
            step: "pw",
            failure: Failure::InvalidCredentials
        }
    );

    let (other, _) = scripted(true, ok(2, &[]));
    let flow = Flow::new(FlowKind::StepUp).step(StepDef::new("pw", other));
    let tags = [Tag::WEAK_AUTHENTICATION].into();
    let mut state = flow.start(Some((uid(1), &tags)));
    let progress = with_ctx(true, |ctx| flow.advance(&mut state, ctx)).unwrap();
    assert!(matches!(
        progress,
        Progress::Failed {
            failure: Failure::UserMismatch,
            ..
        }
    ));
}

#[test]
fn the_built_in_flows_refuse_to_issue_without_a_verified_password() {
    // Step-up started from a remembered-only session, with the token step
    // activated by some other means: the precondition still holds the line.
    let flow = Flow::step_up();
    let tags = [Tag::WEAK_AUTHENTICATION].into();
    let mut state = flow.start(Some((uid(1), &tags)));
    state.activated.insert(ISSUE.to_owned());
    state.position = 1;
    state.waiting = Some(ISSUE.to_owned());
    let progress = with_ctx(false, |ctx| flow.advance(&mut state, ctx)).unwrap();
    assert_eq!(
        progress,
        Progress::Refused {
            step: ISSUE,
            missing: vec![Tag::PASSWORD_VERIFIED]
        }
    );
}

mod properties {
    //! Random flows of scripted steps against a plain model of the rules.

    use proptest::prelude::*;

    use super::*;

    const IDS: [StepId; 5] = ["s0", "s1", "s2", "s3", "s4"];
    const TAGS: [Tag; 2] = [Tag::WEAK_AUTHENTICATION, Tag::PASSWORD_VERIFIED];

    #[derive(Debug, Clone)]
    struct Spec {
        interactive: bool,
        outcome: u8, // 0 success, 1 not applicable, 2 failed
        user: i64,
        activates: Vec<usize>,
        tags: Vec<usize>,
        skip_if: Option<Vec<usize>>,
        precondition: Vec<usize>,
        needs_activation: bool,
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            any::<bool>(),
            0u8..3,
            1i64..3,
            proptest::collection::vec(0usize..5, 0..3),
            proptest::collection::vec(0usize..2, 0..3),
            proptest::option::of(proptest::collection::vec(0usize..2, 0..3)),
            proptest::collection::vec(0usize..2, 0..2),
            any::<bool>(),
        )
            .prop_map(
                |(
                    interactive,
                    outcome,
                    user,
                    activates,
                    tags,
                    skip_if,
                    precondition,
                    needs_activation,
                )| Spec {
                    interactive,
                    outcome,
                    user,
                    activates,
                    tags,
                    skip_if,
                    precondition,
                    needs_activation,
                },
            )
    }

    fn tags_of(indexes: &[usize]) -> Vec<Tag> {
        indexes.iter().map(|&i| TAGS[i].clone()).collect()
    }

    fn outcome(spec: &Spec) -> StepOutcome {
        match spec.outcome {
            0 => StepOutcome::Success {
                user: uid(spec.user),
                activate: spec.activates.iter().map(|&i| IDS[i]).collect(),
            },
            1 => StepOutcome::NotApplicable,
            _ => StepOutcome::Failed(Failure::InvalidCredentials),
        }
    }

    fn build(specs: &[Spec]) -> Flow {
        let mut flow = Flow::new(FlowKind::Login);
        for (i, spec) in specs.iter().enumerate() {
            let (step, _) = scripted(spec.interactive, outcome(spec));
            let mut def = StepDef::new(IDS[i], step)
                .tags_on_success(tags_of(&spec.tags))
                .precondition(Condition::has_all(tags_of(&spec.precondition)));
            if let Some(skip) = &spec.skip_if {
                def = def.skip_if(Condition::has_all(tags_of(skip)));
            }
            if spec.needs_activation {
                def = def.only_when_activated();
            }
            flow = flow.step(def);
        }
        flow
    }

    /// The rules, written as plainly as possible.
    fn model(specs: &[Spec]) -> Option<(UserId, std::collections::BTreeSet<Tag>)> {
        let mut tags = std::collections::BTreeSet::new();
        let mut activated = std::collections::BTreeSet::new();
        let mut user = None;
        let mut input = true;
        for (i, spec) in specs.iter().enumerate() {
            if spec.needs_activation && !activated.contains(&i) {
                continue;
            }
            if let Some(skip) = &spec.skip_if
                && tags_of(skip).iter().all(|t| tags.contains(t))
            {
                continue;
            }
            if !tags_of(&spec.precondition).iter().all(|t| tags.contains(t)) {
                return None;
            }
            if spec.interactive {
                if !input {
                    return None;
                }
                input = false;
            }
            match spec.outcome {
                0 => {
                    if user.as_ref().is_some_and(|u| *u != uid(spec.user)) {
                        return None;
                    }
                    user = Some(uid(spec.user));
                    tags.extend(tags_of(&spec.tags));
                    activated.extend(spec.activates.iter().copied());
                }
                1 => {}
                _ => return None,
            }
        }
        user.map(|u| (u, tags))
    }

    proptest! {
        #[test]
        fn random_flows_never_panic_and_sign_in_only_as_the_rules_allow(
            specs in proptest::collection::vec(spec(), 0..5)
        ) {
            let flow = build(&specs);
            let mut state = flow.start(None);
            let progress = with_ctx(true, |ctx| flow.advance(&mut state, ctx)).unwrap();
            let got = match progress {
                Progress::Complete { user, tags } => Some((user, tags)),
                _ => None,
            };
            prop_assert_eq!(got, model(&specs));
        }
    }
}

/// A directory in which every id is a user named "victim".
struct Victims;

impl crate::store::UserDirectory for Victims {
    fn find_by_username(&self, _: &str) -> Result<Option<crate::store::User>, StoreError> {
        Ok(None)
    }
    fn find_by_id(&self, id: &UserId) -> Result<Option<crate::store::User>, StoreError> {
        Ok(Some(crate::store::User::new(id.clone(), "victim")))
    }
}

/// A token store that claims every presented token was current and has
/// been rotated: the identify step must still refuse a wrong or expired
/// token, from the row the store returned.
struct ClaimsRotated {
    record: crate::store::TokenRecord,
}

impl crate::store::TokenStore for ClaimsRotated {
    fn find_by_series(
        &self,
        _: &crate::token::SecretHash,
    ) -> Result<Option<crate::store::TokenRecord>, StoreError> {
        Ok(Some(self.record.clone()))
    }
    fn find_by_series_with_epoch(
        &self,
        _: &crate::token::SecretHash,
    ) -> Result<Option<(crate::store::TokenRecord, i64)>, StoreError> {
        unreachable!("the step calls find_and_rotate")
    }
    fn find_and_rotate(
        &self,
        _: crate::store::RotationAttempt<'_>,
    ) -> Result<Option<crate::store::FoundSeries>, StoreError> {
        Ok(Some(crate::store::FoundSeries {
            record: self.record.clone(),
            epoch: 0,
            rotated: true,
            audited: false,
            store_now: 0,
        }))
    }
    fn rotate(
        &self,
        _: i64,
        _: &crate::token::SecretHash,
        _: &crate::token::SecretHash,
        _: &[u8],
        _: i64,
        _: Option<i64>,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }
    fn insert(&self, _: crate::store::NewToken<'_>) -> Result<i64, StoreError> {
        Ok(1)
    }
    fn retire_replaced(&self, _: crate::store::Retire<'_>) -> Result<usize, StoreError> {
        Ok(0)
    }
    fn find_owner(&self, _: i64) -> Result<Option<UserId>, StoreError> {
        Ok(None)
    }
    fn delete_series(&self, _: &crate::token::SecretHash) -> Result<bool, StoreError> {
        Ok(true)
    }
    fn delete_by_id(&self, _: i64, _: Option<&UserId>) -> Result<bool, StoreError> {
        Ok(true)
    }
    fn delete_all_for_user(&self, _: &UserId) -> Result<usize, StoreError> {
        Ok(0)
    }
    fn list_for_user(&self, _: &UserId) -> Result<Vec<crate::store::TokenRecord>, StoreError> {
        Ok(Vec::new())
    }
    fn list(
        &self,
        _: Option<&UserId>,
        _: Option<i64>,
        _: i64,
    ) -> Result<Vec<crate::store::TokenRecord>, StoreError> {
        Ok(Vec::new())
    }
    fn purge_expired(&self, _: i64) -> Result<usize, StoreError> {
        Ok(0)
    }
}

/// The row of `cookie`'s series, user 42's, with `token_hash`.
fn token_of_42(
    cookie: &crate::token::RememberCookie,
    token_hash: crate::token::SecretHash,
    expires_at: i64,
) -> crate::store::TokenRecord {
    crate::store::TokenRecord {
        id: 1,
        series_hash: cookie.series.hash(),
        token_hash,
        previous_token_hash: None,
        rotated_at: None,
        user_id: uid(42),
        created_at: 0,
        last_used_at: 0,
        expires_at,
        user_agent: None,
        ip: None,
        device_key: None,
        sealed_token: None,
    }
}

/// A remember-me cookie, and a real store in a temporary SQLite file (kept
/// while the directory lives).
fn a_cookie_and_a_store() -> (crate::token::RememberCookie, tempfile::TempDir, DieselStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(dir.path().join("x.db").to_str().unwrap(), 1).unwrap();
    (
        crate::token::RememberCookie::generate(),
        dir,
        DieselStore::new(db),
    )
}

/// Stores whose tokens claim `record` rotated, over `real`'s state and
/// audit, with [`Victims`] as the directory.
fn claiming(record: crate::store::TokenRecord, real: &DieselStore) -> Stores {
    Stores {
        tokens: std::sync::Arc::new(ClaimsRotated { record }),
        state: std::sync::Arc::new(real.clone()),
        audit: std::sync::Arc::new(real.clone()),
        users: std::sync::Arc::new(Victims),
    }
}

#[test]
fn a_store_claiming_a_rotation_cannot_let_a_wrong_or_expired_token_in() {
    let (cookie, _dir, real) = a_cookie_and_a_store();
    let raw = cookie.encode();
    let now = 1_000;
    for (what, token_hash, expires_at) in [
        (
            "a wrong token",
            crate::token::SecretHash::from_slice(&[7; 32]).unwrap(),
            now + 10,
        ),
        ("an expired token", cookie.token.hash(), now),
    ] {
        let stores = claiming(token_of_42(&cookie, token_hash, expires_at), &real);
        let config = crate::RememberMeConfig::default();
        let client = ClientInfo::default();
        let mut ctx = StepContext::new(&stores, &config, now, &client);
        ctx.remember_cookie = Some(raw.as_bytes());
        let outcome = crate::flow::RememberMeIdentifyStep
            .run(&mut ctx, None)
            .unwrap();
        assert!(
            !matches!(outcome, StepOutcome::Success { .. }),
            "{what} got in: {outcome:?}"
        );
        assert!(ctx.user.is_none(), "{what}");
        assert!(
            matches!(ctx.cookie_change, Some(CookieChange::Remove)),
            "{what}: the cookie goes"
        );
    }
}

/// A state belongs to its flow by name too: another flow of the same kind
/// refuses it without running a step (the adapters start afresh, and the
/// engine holds the rule should one not).
#[test]
fn a_state_of_one_named_flow_does_not_advance_in_another() {
    let (step, runs) = scripted(false, ok(7, &[]));
    let admin = Flow::new(FlowKind::Login)
        .named("admin_login")
        .step(StepDef::new("a", step));
    let mut state = Flow::new(FlowKind::Login).start(None);
    assert_eq!(state.flow_name(), "login");
    let progress = with_ctx(false, |ctx| admin.advance(&mut state, ctx)).unwrap();
    assert!(
        matches!(
            progress,
            Progress::Failed {
                failure: Failure::UserMismatch,
                ..
            }
        ),
        "{progress:?}"
    );
    assert_eq!(*runs.lock().unwrap(), 0, "no step ran");
    let mut own = admin.start(None);
    assert_eq!(own.flow_name(), "admin_login");
    let progress = with_ctx(false, |ctx| admin.advance(&mut own, ctx)).unwrap();
    assert!(
        matches!(progress, Progress::Complete { .. }),
        "{progress:?}"
    );
}

#[test]
fn a_flow_starts_by_rotating_only_if_the_identifying_step_runs_first() {
    // The layer's login flow: the cookie's rotation runs before the steps.
    assert!(Flow::login().starts_by_rotating());
    // Passed over (needs activation, or skipped from the start): the next
    // step is the first to run.
    let (other, _) = scripted(false, StepOutcome::NotApplicable);
    let (skipped, _) = scripted(false, StepOutcome::NotApplicable);
    let flow = Flow::new(FlowKind::Login)
        .step(StepDef::new("other", other).only_when_activated())
        .step(StepDef::new("skipped", skipped).skip_if(Condition::default()))
        .step(StepDef::new("id", RememberMeIdentifyStep));
    assert!(flow.starts_by_rotating());
    // A step of the app's runs first: the flow asks the store itself.
    let (first, _) = scripted(false, StepOutcome::NotApplicable);
    let flow = Flow::new(FlowKind::Login)
        .step(StepDef::new("first", first))
        .step(StepDef::new("id", RememberMeIdentifyStep));
    assert!(!flow.starts_by_rotating());
    // Refused before it runs: nothing to rotate.
    let flow = Flow::new(FlowKind::Login).step(
        StepDef::new("id", RememberMeIdentifyStep)
            .precondition(Condition::has(Tag::PASSWORD_VERIFIED)),
    );
    assert!(!flow.starts_by_rotating());
    assert!(!Flow::step_up().starts_by_rotating());
}

/// A paused state resumes only at the step it stopped at: a flow whose
/// steps moved since (the crate's `Flow::step` now puts the app's steps
/// before the token issuing one) or a state saved before states named
/// their step starts afresh instead of resuming past a step.
#[test]
fn a_paused_state_does_not_resume_past_a_step_that_moved() {
    let old = || {
        Flow::new(FlowKind::Login)
            .step(StepDef::new("pw", scripted(false, ok(9, &[])).0))
            .step(StepDef::new("after", scripted(false, ok(9, &[])).0))
            .step(StepDef::new("code", scripted(true, ok(9, &[])).0))
    };
    let mut state = old().start(None);
    let progress = with_ctx(false, |ctx| old().advance(&mut state, ctx)).unwrap();
    assert_eq!(progress, Progress::NeedsInput { step: "code" });
    let saved = serde_json::to_value(&state).unwrap();

    // The same flow resumes it.
    let mut same: FlowState = serde_json::from_value(saved.clone()).unwrap();
    let progress = with_ctx(true, |ctx| old().advance(&mut same, ctx)).unwrap();
    assert!(
        matches!(progress, Progress::Complete { .. }),
        "{progress:?}"
    );

    // "code" moved before "after": position 2 is now "after".
    let (code, code_runs) = scripted(true, ok(9, &[]));
    let (after, after_runs) = scripted(false, ok(9, &[]));
    let moved = Flow::new(FlowKind::Login)
        .step(StepDef::new("pw", scripted(false, ok(9, &[])).0))
        .step(StepDef::new("code", code))
        .step(StepDef::new("after", after));
    let refused = |progress: &Progress| {
        matches!(
            progress,
            Progress::Failed {
                failure: Failure::UserMismatch,
                ..
            }
        )
    };
    let mut stale: FlowState = serde_json::from_value(saved.clone()).unwrap();
    let progress = with_ctx(true, |ctx| moved.advance(&mut stale, ctx)).unwrap();
    assert!(refused(&progress), "{progress:?}");
    // A state from before `waiting` existed, at the right place or not.
    let mut old_format = saved;
    old_format.as_object_mut().unwrap().remove("waiting");
    let mut stale: FlowState = serde_json::from_value(old_format).unwrap();
    let progress = with_ctx(true, |ctx| old().advance(&mut stale, ctx)).unwrap();
    assert!(refused(&progress), "{progress:?}");
    assert_eq!(*code_runs.lock().unwrap() + *after_runs.lock().unwrap(), 0);
}

/// `Flow::step` puts a step added after the token issuing step before it.
#[test]
fn an_app_step_goes_before_the_token_issuing_step() {
    let flow = Flow::login()
        .step(StepDef::new("code", scripted(true, ok(9, &[])).0))
        .step(StepDef::new("notify", scripted(false, ok(9, &[])).0));
    let ids: Vec<_> = flow.steps.iter().map(|d| d.id).collect();
    assert_eq!(ids, [IDENTIFY, PASSWORD, "code", "notify", ISSUE]);
}

/// A token step of the app's own: sets a new remember-me cookie.
struct IssuesOwnToken;

impl Step for IssuesOwnToken {
    fn is_interactive(&self) -> bool {
        false
    }
    fn run(
        &self,
        ctx: &mut StepContext<'_>,
        _: Option<&UserId>,
    ) -> Result<StepOutcome, StoreError> {
        ctx.cookie_change = Some(CookieChange::Set {
            cookie: crate::token::RememberCookie::generate(),
            max_age_secs: 60,
        });
        Ok(ok(9, &[]))
    }
}

/// What the engine logs at `warn` and above while `f` runs on this thread.
fn warnings_of<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "rememberme::flow::engine=warn",
        ))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    (out, logged)
}

/// A flow that issues a token of the app's own before an interactive step
/// pauses with the token (which the bridge withdraws: "Keep me logged in"
/// then gives nothing), and the app's developer hears of it: a warning
/// naming the flow and the step. A pause with no token issued is silent.
#[test]
fn a_token_issued_before_an_interactive_step_is_warned_about() {
    let flow = Flow::new(FlowKind::Login)
        .step(StepDef::new("my_token", IssuesOwnToken))
        .step(StepDef::new("code", scripted(true, ok(9, &[])).0));
    let mut state = flow.start(None);
    let (progress, logged) = warnings_of(|| with_ctx(false, |ctx| flow.advance(&mut state, ctx)));
    assert_eq!(progress.unwrap(), Progress::NeedsInput { step: "code" });
    assert!(
        logged.contains("WARN")
            && logged.contains("issued before this interactive step")
            && logged.contains("code"),
        "{logged:?}"
    );

    let quiet = Flow::new(FlowKind::Login).step(StepDef::new("code", scripted(true, ok(9, &[])).0));
    let mut state = quiet.start(None);
    let (progress, logged) = warnings_of(|| with_ctx(false, |ctx| quiet.advance(&mut state, ctx)));
    assert_eq!(progress.unwrap(), Progress::NeedsInput { step: "code" });
    assert_eq!(logged, "", "no token, no warning");
}

/// A step of the app's that wraps the issuing step is not recognised by
/// its type; marked with `StepDef::issues_token`, it is, and a step added
/// after it goes before it.
#[test]
fn a_step_marked_as_issuing_a_token_stays_last() {
    let wrapped = Flow::new(FlowKind::Login)
        .step(StepDef::new("my_issue", IssuesOwnToken))
        .step(StepDef::new("code", scripted(true, ok(9, &[])).0));
    let ids: Vec<_> = wrapped.steps.iter().map(|d| d.id).collect();
    assert_eq!(ids, ["my_issue", "code"], "unmarked: in the order added");
    let marked = Flow::new(FlowKind::Login)
        .step(StepDef::new("my_issue", IssuesOwnToken).issues_token())
        .step(StepDef::new("code", scripted(true, ok(9, &[])).0));
    let ids: Vec<_> = marked.steps.iter().map(|d| d.id).collect();
    assert_eq!(ids, ["code", "my_issue"]);
}

/// The owner a rotation batch read is taken only if it is the token's
/// owner: with another user's (a directory answering out of order), or
/// none, the token's owner is read by id.
#[test]
fn a_batch_owner_is_taken_only_for_the_tokens_own_user() {
    use crate::flow::{Prefetched, Rotation};
    use crate::store::{FoundSeries, User};
    let (cookie, _dir, real) = a_cookie_and_a_store();
    let raw = cookie.encode();
    let now = 1_000;
    let record = token_of_42(&cookie, cookie.token.hash(), now + 10);
    let stores = claiming(record.clone(), &real);
    let config = crate::RememberMeConfig::default();
    let client = ClientInfo::default();
    for (owner, named) in [
        (Some(User::new(uid(42), "as read")), "as read"),
        (Some(User::new(uid(7), "mallory")), "victim"),
        (None, "victim"),
    ] {
        let mut ctx = StepContext::new(&stores, &config, now, &client);
        ctx.remember_cookie = Some(raw.as_bytes());
        let rotation = Rotation::prepare(&ctx, raw.as_bytes()).unwrap();
        ctx.prefetched = Some(Prefetched {
            raw: raw.as_bytes().to_vec(),
            rotation,
            outcome: Ok(Some(FoundSeries {
                record: record.clone(),
                epoch: 0,
                rotated: true,
                audited: true,
                store_now: now,
            })),
            owner,
        });
        let outcome = crate::flow::RememberMeIdentifyStep
            .run(&mut ctx, None)
            .unwrap();
        assert!(
            matches!(&outcome, StepOutcome::Success { user, .. } if *user == uid(42)),
            "{named}: {outcome:?}"
        );
        let user = ctx.user.as_ref().expect("the owner");
        assert_eq!((&user.id, user.username.as_str()), (&uid(42), named));
        assert!(matches!(ctx.cookie_change, Some(CookieChange::Set { .. })));
    }
}
