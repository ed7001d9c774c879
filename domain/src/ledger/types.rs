//! Ledger vocabulary: accounts, transfers, postings and their errors.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::{Amount, Asset};

/// Who an account belongs to. Stored as text: `user:<uuid>`, `partner:<uuid>`,
/// `pool:<id>`, `network:<code>` or `platform`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    User(Uuid),
    Partner(Uuid),
    Pool(String),
    Network(String),
    Platform,
}

impl Owner {
    pub fn key(&self) -> String {
        match self {
            Owner::User(id) => format!("user:{id}"),
            Owner::Partner(id) => format!("partner:{id}"),
            Owner::Pool(id) => format!("pool:{id}"),
            Owner::Network(code) => format!("network:{code}"),
            Owner::Platform => "platform".to_owned(),
        }
    }
}

/// What an account is for. Customer and partner accounts may never go below
/// zero; platform accounts are sources and sinks of value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A customer's balance: available = credits − debits − held.
    Customer,
    /// A partner's prepaid balance.
    Partner,
    /// What a pool paid us, one per pool and coin.
    MiningIncome,
    /// Maintenance fees collected.
    FeeRevenue,
    /// Unsold capacity and the house share of pool earnings.
    House,
    /// Contract sales.
    SalesRevenue,
    /// Coins that came in or went out through a network.
    Custody,
    /// The other side of currency conversions.
    ConversionTreasury,
    /// Remainders of floor rounding.
    Rounding,
    /// Operator adjustments and corrections.
    Equity,
}

impl AccountKind {
    pub const ALL: [AccountKind; 10] = [
        AccountKind::Customer,
        AccountKind::Partner,
        AccountKind::MiningIncome,
        AccountKind::FeeRevenue,
        AccountKind::House,
        AccountKind::SalesRevenue,
        AccountKind::Custody,
        AccountKind::ConversionTreasury,
        AccountKind::Rounding,
        AccountKind::Equity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Customer => "customer",
            AccountKind::Partner => "partner",
            AccountKind::MiningIncome => "mining_income",
            AccountKind::FeeRevenue => "fee_revenue",
            AccountKind::House => "house",
            AccountKind::SalesRevenue => "sales_revenue",
            AccountKind::Custody => "custody",
            AccountKind::ConversionTreasury => "conversion_treasury",
            AccountKind::Rounding => "rounding",
            AccountKind::Equity => "equity",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Money of customers and partners can never be spent twice.
    pub fn debits_must_not_exceed_credits(self) -> bool {
        matches!(self, AccountKind::Customer | AccountKind::Partner)
    }
}

/// Why money moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Purchase,
    Payout,
    Fee,
    Deposit,
    WithdrawalHold,
    WithdrawalSettle,
    WithdrawalRelease,
    Conversion,
    Refund,
    Adjustment,
    MiningIncome,
    HouseShare,
    Rounding,
}

impl TransferKind {
    pub const ALL: [TransferKind; 13] = [
        TransferKind::Purchase,
        TransferKind::Payout,
        TransferKind::Fee,
        TransferKind::Deposit,
        TransferKind::WithdrawalHold,
        TransferKind::WithdrawalSettle,
        TransferKind::WithdrawalRelease,
        TransferKind::Conversion,
        TransferKind::Refund,
        TransferKind::Adjustment,
        TransferKind::MiningIncome,
        TransferKind::HouseShare,
        TransferKind::Rounding,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Purchase => "purchase",
            TransferKind::Payout => "payout",
            TransferKind::Fee => "fee",
            TransferKind::Deposit => "deposit",
            TransferKind::WithdrawalHold => "withdrawal_hold",
            TransferKind::WithdrawalSettle => "withdrawal_settle",
            TransferKind::WithdrawalRelease => "withdrawal_release",
            TransferKind::Conversion => "conversion",
            TransferKind::Refund => "refund",
            TransferKind::Adjustment => "adjustment",
            TransferKind::MiningIncome => "mining_income",
            TransferKind::HouseShare => "house_share",
            TransferKind::Rounding => "rounding",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The phase of a transfer in the two-phase protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Posted at once.
    Single,
    /// A hold: reserved, not yet moved.
    Pending,
    /// Ends a hold by moving (part of) it.
    Post,
    /// Ends a hold by releasing it.
    Void,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Single => "single",
            Phase::Pending => "pending",
            Phase::Post => "post",
            Phase::Void => "void",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Phase::Single, Phase::Pending, Phase::Post, Phase::Void]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// An account with its cached balances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: i64,
    pub owner: String,
    pub asset: Asset,
    pub kind: AccountKind,
    pub debits_pending: Decimal,
    pub debits_posted: Decimal,
    pub credits_pending: Decimal,
    pub credits_posted: Decimal,
    pub debits_must_not_exceed_credits: bool,
    pub credits_must_not_exceed_debits: bool,
    pub created_at: DateTime<Utc>,
}

impl Account {
    /// What the owner can spend now: posted credits − posted debits − holds.
    pub fn available(&self) -> Decimal {
        (self.credits_posted - self.debits_posted - self.debits_pending).normalize()
    }

    /// What is reserved by holds that are not yet posted or voided.
    pub fn held(&self) -> Decimal {
        self.debits_pending.normalize()
    }

    /// The posted balance seen from the credit side (credits − debits).
    pub fn posted_balance(&self) -> Decimal {
        (self.credits_posted - self.debits_posted).normalize()
    }
}

/// A transfer as stored. Never updated, never deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transfer {
    pub id: Uuid,
    pub reference: String,
    pub kind: TransferKind,
    pub phase: Phase,
    pub asset: Asset,
    pub debit_account_id: i64,
    pub credit_account_id: i64,
    pub amount: Decimal,
    pub pending_id: Option<Uuid>,
    pub corrects_id: Option<Uuid>,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// A transfer to create: moved at once, or held when `pending` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTransfer {
    /// Unique forever; posting the same reference again with the same content
    /// is a no-op, with other content an error.
    pub reference: String,
    pub kind: TransferKind,
    pub debit_account_id: i64,
    pub credit_account_id: i64,
    pub amount: Amount,
    pub pending: bool,
    /// The transfer this one corrects.
    pub corrects: Option<Uuid>,
    pub metadata: serde_json::Value,
}

impl NewTransfer {
    pub fn new(
        reference: impl Into<String>,
        kind: TransferKind,
        debit_account_id: i64,
        credit_account_id: i64,
        amount: Amount,
    ) -> Self {
        NewTransfer {
            reference: reference.into(),
            kind,
            debit_account_id,
            credit_account_id,
            amount,
            pending: false,
            corrects: None,
            metadata: serde_json::Value::Object(Default::default()),
        }
    }

    /// Makes this transfer a hold.
    pub fn pending(mut self) -> Self {
        self.pending = true;
        self
    }

    /// Marks this transfer as the correction of `original`.
    pub fn correcting(mut self, original: Uuid) -> Self {
        self.corrects = Some(original);
        self
    }

    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// One entry of a batch passed to [`super::post_batch`].
#[derive(Debug, Clone, PartialEq)]
pub enum Posting {
    Transfer(NewTransfer),
    /// Moves a hold: all of it, or `amount` of it, releasing the rest.
    PostPending {
        reference: String,
        pending_id: Uuid,
        kind: TransferKind,
        amount: Option<Decimal>,
    },
    /// Releases a hold.
    VoidPending {
        reference: String,
        pending_id: Uuid,
        kind: TransferKind,
    },
}

impl Posting {
    pub fn reference(&self) -> &str {
        match self {
            Posting::Transfer(t) => &t.reference,
            Posting::PostPending { reference, .. } | Posting::VoidPending { reference, .. } => {
                reference
            }
        }
    }
}

impl From<NewTransfer> for Posting {
    fn from(t: NewTransfer) -> Self {
        Posting::Transfer(t)
    }
}

/// What a batch did with each of its postings, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// Newly written.
    Created(Transfer),
    /// The same reference with the same content was already posted: nothing changed.
    Existing(Transfer),
}

impl Posted {
    pub fn transfer(&self) -> &Transfer {
        match self {
            Posted::Created(t) | Posted::Existing(t) => t,
        }
    }

    pub fn is_created(&self) -> bool {
        matches!(self, Posted::Created(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the batch is empty")]
    EmptyBatch,
    #[error("reference {0:?} appears twice in one batch")]
    DuplicateReferenceInBatch(String),
    #[error("reference must be 1 to 200 printable characters")]
    InvalidReference,
    #[error("a transfer must debit and credit two different accounts")]
    SameAccount,
    #[error("amount must be greater than zero")]
    NonPositiveAmount,
    #[error("account {0} does not exist")]
    UnknownAccount(i64),
    #[error("account {account_id} holds {account_asset}, not {asset}")]
    AssetMismatch {
        account_id: i64,
        account_asset: Asset,
        asset: Asset,
    },
    #[error("account {account_id} has insufficient funds in {asset}")]
    InsufficientFunds { account_id: i64, asset: Asset },
    #[error("account {account_id} would exceed its credit limit in {asset}")]
    CreditLimitExceeded { account_id: i64, asset: Asset },
    #[error("reference {0:?} was already posted with different content")]
    ReferenceConflict(String),
    #[error("transfer {0} is not a pending transfer")]
    NotPending(Uuid),
    #[error("pending transfer {0} was already posted or voided")]
    HoldAlreadyResolved(Uuid),
    #[error("posting {posted} exceeds the pending amount {pending}")]
    PostExceedsPending { pending: Decimal, posted: Decimal },
    #[error("transfer {0} does not exist")]
    UnknownTransfer(Uuid),
    #[error("stored ledger row is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
}

impl LedgerError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::EmptyBatch => "empty_batch",
            LedgerError::DuplicateReferenceInBatch(_) => "duplicate_reference",
            LedgerError::InvalidReference => "invalid_reference",
            LedgerError::SameAccount => "same_account",
            LedgerError::NonPositiveAmount => "invalid_amount",
            LedgerError::UnknownAccount(_) => "unknown_account",
            LedgerError::AssetMismatch { .. } => "asset_mismatch",
            LedgerError::InsufficientFunds { .. } => "insufficient_funds",
            LedgerError::CreditLimitExceeded { .. } => "credit_limit_exceeded",
            LedgerError::ReferenceConflict(_) => "reference_conflict",
            LedgerError::NotPending(_) => "not_pending",
            LedgerError::HoldAlreadyResolved(_) => "hold_already_resolved",
            LedgerError::PostExceedsPending { .. } => "post_exceeds_pending",
            LedgerError::UnknownTransfer(_) => "unknown_transfer",
            LedgerError::Corrupt(_) => "ledger_corrupt",
            LedgerError::Database(_) => "database_error",
        }
    }
}

/// One finding of the reconciliation; an empty list means the ledger is whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReconciliationProblem {
    /// e.g. `debits_posted_mismatch`, `asset_posted_unbalanced`, `customer_balance_negative`
    pub problem: String,
    pub asset: String,
    pub account_id: Option<i64>,
    #[schema(value_type = String)]
    pub expected: Decimal,
    #[schema(value_type = String)]
    pub actual: Decimal,
}
