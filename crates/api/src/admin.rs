//! `scalesense admin …`: operator commands that work on the database directly, for the first
//! admin of an account and for people locked out of the dashboard.
//!
//! A password is read from standard input (`--password-stdin`) or generated and shown once; it
//! is never taken from a flag (flags are visible to every user of the machine in `ps`) and never
//! logged. Hashing uses the production Argon2id cost.

use std::io::BufRead;

use scalesense_domain::roles::Role;
use scalesense_proto::LocationId;
use scalesense_store::{AccountId, NewUser, Store, StoreError, UserId};

use crate::auth::password::{PasswordCost, Passwords, check_new_password};
use crate::auth::{secrets, store_role};
use crate::state::Clock as _;

/// `scalesense admin`.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The operator commands.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create a dashboard user (and, with --account-name, the account if it does not exist).
    CreateUser(CreateUserArgs),
    /// Set a new password for a user and end all of their sessions.
    ResetPassword(ResetPasswordArgs),
}

/// `scalesense admin reset-password`.
#[derive(Debug, Clone, clap::Args)]
pub struct ResetPasswordArgs {
    /// The database: `postgres://…`, or a SQLite file path.
    #[arg(long, env = "SCALESENSE_DATABASE")]
    pub database: String,
    /// The customer account the user belongs to, e.g. `demo`.
    #[arg(long)]
    pub account: String,
    /// The user's e-mail (their login name).
    #[arg(long)]
    pub email: String,
    /// Read the new password from the first line of standard input; without it a random
    /// password is generated and printed once.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `scalesense admin create-user`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateUserArgs {
    /// The database: `postgres://…`, or a SQLite file path.
    #[arg(long, env = "SCALESENSE_DATABASE")]
    pub database: String,
    /// The customer account the user belongs to, e.g. `demo`.
    #[arg(long)]
    pub account: String,
    /// Create the account with this display name when it does not exist yet.
    #[arg(long)]
    pub account_name: Option<String>,
    /// The user's e-mail, their login name (stored lower-cased).
    #[arg(long)]
    pub email: String,
    /// staff, manager or admin.
    #[arg(long, value_parser = parse_role)]
    pub role: Role,
    /// Limit the user to this location (repeat for several); default: every location.
    #[arg(long = "location")]
    pub locations: Vec<String>,
    /// Read the password from the first line of standard input; without it a random password is
    /// generated and printed once.
    #[arg(long)]
    pub password_stdin: bool,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("reading the password from standard input: {0}")]
    Stdin(#[from] std::io::Error),
    #[error("hashing the password: {0}")]
    Hash(String),
}

/// What `create-user` did, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedUser {
    pub user_id: String,
    pub account_created: bool,
    /// The generated password, when none was given: shown once.
    pub generated_password: Option<String>,
}

/// Creates the user in `store` (the account too when asked). `password`: `None` generates one.
pub async fn create_user(
    store: &dyn Store,
    args: &CreateUserArgs,
    password: Option<String>,
    now: i64,
) -> Result<CreatedUser, AdminError> {
    let account = AccountId::try_from(args.account.as_str())
        .map_err(|e| AdminError::Invalid(format!("--account: {e}")))?;
    let email = args.email.trim().to_lowercase();
    if !email.contains('@') || email.len() > 254 {
        return Err(AdminError::Invalid(
            "--email must be an e-mail address".into(),
        ));
    }
    let mut account_created = false;
    match store.account(&account).await {
        Ok(_) => {}
        Err(StoreError::NotFound { .. }) => {
            let name = args.account_name.as_deref().ok_or_else(|| {
                AdminError::Invalid(format!(
                    "account {account} does not exist; pass --account-name to create it"
                ))
            })?;
            store.create_account(&account, name, now).await?;
            account_created = true;
        }
        Err(e) => return Err(e.into()),
    }
    let mut allowed = Vec::new();
    for raw in &args.locations {
        let id = LocationId::try_from(raw.as_str())
            .map_err(|e| AdminError::Invalid(format!("--location {raw}: {e}")))?;
        store.location(&account, &id).await?;
        allowed.push(id);
    }
    let (hash, generated_password) = new_password_hash(password).await?;
    let user_id = UserId::try_from(format!("usr-{}", secrets::random_suffix(8)).as_str())
        .map_err(|e| AdminError::Invalid(e.to_string()))?;
    store
        .create_user(
            &account,
            &NewUser {
                id: user_id.clone(),
                email,
                password_hash: hash,
                role: store_role(args.role),
                allowed_locations: (!allowed.is_empty()).then_some(allowed),
                created_at: now,
            },
        )
        .await?;
    Ok(CreatedUser {
        user_id: user_id.to_string(),
        account_created,
        generated_password,
    })
}

/// What `reset-password` did, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordReset {
    pub user_id: String,
    /// Sessions ended, so a stolen session does not outlive the old password.
    pub sessions_revoked: u64,
    /// The generated password, when none was given: shown once.
    pub generated_password: Option<String>,
}

/// Hashes a new password (checked against the password rules) at the production cost; `None`
/// generates one. Returns the hash and the generated password.
async fn new_password_hash(
    password: Option<String>,
) -> Result<(String, Option<String>), AdminError> {
    let generated = match password {
        Some(_) => None,
        None => Some(secrets::new_password()),
    };
    let password = password.or_else(|| generated.clone()).unwrap_or_default();
    check_new_password(&password).map_err(|e| AdminError::Invalid(format!("password {e}")))?;
    let hash = tokio::task::spawn_blocking(move || {
        Passwords::new(PasswordCost::default()).and_then(|p| p.hash(&password))
    })
    .await
    .map_err(|e| AdminError::Hash(e.to_string()))?
    .map_err(AdminError::Hash)?;
    Ok((hash, generated))
}

/// Sets a new password for the user with `args.email` in `args.account` and revokes all of
/// their sessions. `password`: `None` generates one.
pub async fn reset_password(
    store: &dyn Store,
    args: &ResetPasswordArgs,
    password: Option<String>,
    now: i64,
) -> Result<PasswordReset, AdminError> {
    let account = AccountId::try_from(args.account.as_str())
        .map_err(|e| AdminError::Invalid(format!("--account: {e}")))?;
    let user = store
        .user_by_email(&account, &args.email)
        .await?
        .ok_or_else(|| {
            AdminError::Invalid(format!(
                "no user {} in account {account}",
                args.email.trim().to_lowercase()
            ))
        })?;
    let (hash, generated_password) = new_password_hash(password).await?;
    store.set_user_password(&account, &user.id, &hash).await?;
    let sessions_revoked = store.revoke_user_sessions(&account, &user.id, now).await?;
    Ok(PasswordReset {
        user_id: user.id.to_string(),
        sessions_revoked,
        generated_password,
    })
}

/// The first line of standard input, without its line ending.
fn password_from_stdin() -> Result<String, AdminError> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Runs an admin command to completion and returns what to print.
pub fn run(args: &AdminArgs) -> Result<String, AdminError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match &args.command {
        AdminCommand::CreateUser(a) => {
            let password = if a.password_stdin {
                Some(password_from_stdin()?)
            } else {
                None
            };
            runtime.block_on(async {
                let store = scalesense_store::connect(&a.database).await?;
                let now = crate::state::SystemClock.now_ms();
                let created = create_user(store.as_ref(), a, password, now).await?;
                let mut out = format!(
                    "created {} user {} ({}) in account {}",
                    a.role, created.user_id, a.email, a.account
                );
                if created.account_created {
                    out.push_str(" (account created)");
                }
                if let Some(p) = created.generated_password {
                    out.push_str("\npassword (shown once): ");
                    out.push_str(&p);
                }
                Ok(out)
            })
        }
        AdminCommand::ResetPassword(a) => {
            let password = if a.password_stdin {
                Some(password_from_stdin()?)
            } else {
                None
            };
            runtime.block_on(async {
                let store = scalesense_store::connect(&a.database).await?;
                let now = crate::state::SystemClock.now_ms();
                let reset = reset_password(store.as_ref(), a, password, now).await?;
                let mut out = format!(
                    "new password set for user {} ({}) in account {}; {} session(s) ended",
                    reset.user_id, a.email, a.account, reset.sessions_revoked
                );
                if let Some(p) = reset.generated_password {
                    out.push_str("\npassword (shown once): ");
                    out.push_str(&p);
                }
                Ok(out)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn args(account: &str, account_name: Option<&str>) -> CreateUserArgs {
        CreateUserArgs {
            database: String::new(),
            account: account.into(),
            account_name: account_name.map(str::to_owned),
            email: "Owner@Bar.example".into(),
            role: Role::Admin,
            locations: Vec::new(),
            password_stdin: false,
        }
    }

    #[tokio::test]
    async fn creates_the_account_and_a_user_who_can_log_in() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            scalesense_store::SqliteStore::open(&dir.path().join("a.db"))
                .await
                .unwrap(),
        );
        let missing = create_user(store.as_ref(), &args("bar", None), None, 0).await;
        assert!(matches!(missing, Err(AdminError::Invalid(m)) if m.contains("--account-name")));
        let created = create_user(store.as_ref(), &args("bar", Some("The Bar")), None, 0)
            .await
            .unwrap();
        assert!(created.account_created);
        let password = created.generated_password.unwrap();
        assert!(password.len() >= 20);
        let account = AccountId::try_from("bar").unwrap();
        let user = store
            .user_by_email(&account, "owner@bar.example")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.role, scalesense_store::Role::Admin);
        let passwords = Passwords::new(PasswordCost::TEST_ONLY).unwrap();
        assert!(passwords.verify(&password, Some(&user.password_hash)));
        // A given password is used as is, and a weak one is refused.
        let mut second = args("bar", None);
        second.email = "staff@bar.example".into();
        second.role = Role::Staff;
        let given = create_user(store.as_ref(), &second, Some("a long password".into()), 0)
            .await
            .unwrap();
        assert_eq!(given.generated_password, None);
        second.email = "weak@bar.example".into();
        assert!(
            create_user(store.as_ref(), &second, Some("short".into()), 0)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn reset_password_sets_a_new_hash_and_ends_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            scalesense_store::SqliteStore::open(&dir.path().join("r.db"))
                .await
                .unwrap(),
        );
        let created = create_user(store.as_ref(), &args("bar", Some("The Bar")), None, 0)
            .await
            .unwrap();
        let old_password = created.generated_password.unwrap();
        let account = AccountId::try_from("bar").unwrap();
        let user_id = UserId::try_from(created.user_id.as_str()).unwrap();
        for hash in ["h1", "h2"] {
            store
                .create_session(
                    &account,
                    &scalesense_store::NewSession {
                        token_hash: hash.into(),
                        user_id: user_id.clone(),
                        created_at: 0,
                        expires_at: 1_000_000,
                    },
                )
                .await
                .unwrap();
        }
        let reset_args = |email: &str| ResetPasswordArgs {
            database: String::new(),
            account: "bar".into(),
            email: email.into(),
            password_stdin: false,
        };
        let passwords = Passwords::new(PasswordCost::TEST_ONLY).unwrap();

        // Generated: shown once, the old password stops working, both sessions end.
        let reset = reset_password(store.as_ref(), &reset_args("OWNER@bar.example"), None, 10)
            .await
            .unwrap();
        assert_eq!(reset.user_id, created.user_id);
        assert_eq!(reset.sessions_revoked, 2);
        let new_password = reset.generated_password.unwrap();
        assert!(new_password.len() >= 20);
        assert_ne!(new_password, old_password);
        let hash = store.user(&account, &user_id).await.unwrap().password_hash;
        assert!(hash.starts_with("$argon2id$"));
        assert!(passwords.verify(&new_password, Some(&hash)));
        assert!(!passwords.verify(&old_password, Some(&hash)));
        assert!(store.session("h1", 20).await.unwrap().is_none());
        assert!(store.session("h2", 20).await.unwrap().is_none());

        // Given on stdin: used as is; no sessions left to end.
        let given = reset_password(
            store.as_ref(),
            &reset_args("owner@bar.example"),
            Some("another long password".into()),
            20,
        )
        .await
        .unwrap();
        assert_eq!(given.generated_password, None);
        assert_eq!(given.sessions_revoked, 0);
        let hash = store.user(&account, &user_id).await.unwrap().password_hash;
        assert!(passwords.verify("another long password", Some(&hash)));

        // A weak password and an unknown user are refused, and the hash is unchanged.
        assert!(matches!(
            reset_password(
                store.as_ref(),
                &reset_args("owner@bar.example"),
                Some("short".into()),
                30
            )
            .await,
            Err(AdminError::Invalid(_))
        ));
        assert!(matches!(
            reset_password(store.as_ref(), &reset_args("nobody@bar.example"), None, 30).await,
            Err(AdminError::Invalid(m)) if m.contains("no user")
        ));
        assert_eq!(
            store.user(&account, &user_id).await.unwrap().password_hash,
            hash
        );
    }
}
