//! Assets, networks and exact money amounts.
//!
//! Every amount that enters Hashgrid goes through this module: clients send
//! decimal strings, never floats, and nothing here rounds silently. Splitting
//! helpers work on integer smallest units so a payout never creates or loses a
//! unit.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use ethnum::U256;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

/// Largest magnitude an [`Amount`] may have, in whole units of its asset.
///
/// 10^20 whole units at 18 decimals is 10^38 smallest units, which still fits
/// in `u128` (and `i128`), so unit conversions of any valid amount cannot
/// overflow.
const MAX_WHOLE_UNITS: u128 = 100_000_000_000_000_000_000;

/// Highest scale `rust_decimal` can represent.
const MAX_DECIMAL_SCALE: u32 = 28;

/// A currency the ledger keeps balances in.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Asset {
    BTC,
    ETH,
    DOGE,
    BNB,
    USDT,
    USDC,
}

impl Asset {
    pub const ALL: [Asset; 6] = [
        Asset::BTC,
        Asset::ETH,
        Asset::DOGE,
        Asset::BNB,
        Asset::USDT,
        Asset::USDC,
    ];

    /// The upper-case ticker, as used on the wire.
    pub const fn code(self) -> &'static str {
        match self {
            Asset::BTC => "BTC",
            Asset::ETH => "ETH",
            Asset::DOGE => "DOGE",
            Asset::BNB => "BNB",
            Asset::USDT => "USDT",
            Asset::USDC => "USDC",
        }
    }

    /// Human-readable name.
    pub const fn name(self) -> &'static str {
        match self {
            Asset::BTC => "Bitcoin",
            Asset::ETH => "Ether",
            Asset::DOGE => "Dogecoin",
            Asset::BNB => "BNB",
            Asset::USDT => "Tether USD",
            Asset::USDC => "USD Coin",
        }
    }

    /// Precision at which the ledger keeps balances of this asset.
    ///
    /// This is the smallest precision among the asset's networks, so any
    /// balance can be withdrawn on every network without a dust remainder
    /// (USDT has 18 decimals on BSC but only 6 on Ethereum and Tron).
    pub const fn ledger_decimals(self) -> u32 {
        match self {
            Asset::BTC | Asset::DOGE => 8,
            Asset::ETH | Asset::BNB => 18,
            Asset::USDT | Asset::USDC => 6,
        }
    }

    /// Networks this asset can be deposited and withdrawn on.
    pub const fn networks(self) -> &'static [Network] {
        match self {
            Asset::BTC => &[Network::Bitcoin],
            Asset::ETH => &[Network::Ethereum],
            Asset::DOGE => &[Network::Dogecoin],
            Asset::BNB => &[Network::Bsc],
            Asset::USDT => &[Network::Ethereum, Network::Bsc, Network::Tron],
            Asset::USDC => &[Network::Ethereum, Network::Bsc],
        }
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An asset code that is not exactly one of the upper-case tickers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown asset {0:?}; expected one of BTC, ETH, DOGE, BNB, USDT, USDC")]
pub struct UnknownAsset(pub String);

impl FromStr for Asset {
    type Err = UnknownAsset;

    /// Accepts only the exact upper-case code: "btc" is rejected so that one
    /// spelling is canonical everywhere (URLs, cache keys, logs).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Asset::ALL
            .into_iter()
            .find(|asset| asset.code() == s)
            .ok_or_else(|| UnknownAsset(s.to_owned()))
    }
}

/// A blockchain Hashgrid talks to.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Bitcoin,
    Dogecoin,
    Ethereum,
    Bsc,
    Tron,
}

impl Network {
    pub const ALL: [Network; 5] = [
        Network::Bitcoin,
        Network::Dogecoin,
        Network::Ethereum,
        Network::Bsc,
        Network::Tron,
    ];

    /// The lower-case code, as used on the wire.
    pub const fn code(self) -> &'static str {
        match self {
            Network::Bitcoin => "bitcoin",
            Network::Dogecoin => "dogecoin",
            Network::Ethereum => "ethereum",
            Network::Bsc => "bsc",
            Network::Tron => "tron",
        }
    }

    /// Human-readable name.
    pub const fn name(self) -> &'static str {
        match self {
            Network::Bitcoin => "Bitcoin",
            Network::Dogecoin => "Dogecoin",
            Network::Ethereum => "Ethereum",
            Network::Bsc => "BNB Smart Chain",
            Network::Tron => "Tron",
        }
    }

    /// The asset that pays this network's fees, if the ledger holds it.
    ///
    /// `None` for Tron: its native coin TRX is not a ledger asset (see
    /// [`Network::native_symbol`]).
    pub const fn native_asset(self) -> Option<Asset> {
        match self {
            Network::Bitcoin => Some(Asset::BTC),
            Network::Dogecoin => Some(Asset::DOGE),
            Network::Ethereum => Some(Asset::ETH),
            Network::Bsc => Some(Asset::BNB),
            Network::Tron => None,
        }
    }

    /// Ticker of the coin that pays this network's fees.
    pub const fn native_symbol(self) -> &'static str {
        match self {
            Network::Bitcoin => "BTC",
            Network::Dogecoin => "DOGE",
            Network::Ethereum => "ETH",
            Network::Bsc => "BNB",
            Network::Tron => "TRX",
        }
    }

    /// Default number of confirmations before a deposit is credited.
    pub const fn confirmations(self) -> u32 {
        match self {
            Network::Bitcoin => 3,
            Network::Dogecoin => 40,
            Network::Ethereum => 12,
            Network::Bsc => 15,
            Network::Tron => 20,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A network code that is not exactly one of the lower-case codes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown network {0:?}; expected one of bitcoin, dogecoin, ethereum, bsc, tron")]
pub struct UnknownNetwork(pub String);

impl FromStr for Network {
    type Err = UnknownNetwork;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Network::ALL
            .into_iter()
            .find(|network| network.code() == s)
            .ok_or_else(|| UnknownNetwork(s.to_owned()))
    }
}

/// Every supported (asset, network) pair.
pub const SUPPORTED: &[(Asset, Network)] = &[
    (Asset::BTC, Network::Bitcoin),
    (Asset::ETH, Network::Ethereum),
    (Asset::DOGE, Network::Dogecoin),
    (Asset::BNB, Network::Bsc),
    (Asset::USDT, Network::Ethereum),
    (Asset::USDT, Network::Bsc),
    (Asset::USDT, Network::Tron),
    (Asset::USDC, Network::Ethereum),
    (Asset::USDC, Network::Bsc),
];

/// On-chain precision of `asset` on `network`, or `None` if the pair is not
/// supported.
pub const fn decimals_on(asset: Asset, network: Network) -> Option<u32> {
    match (asset, network) {
        (Asset::BTC, Network::Bitcoin) | (Asset::DOGE, Network::Dogecoin) => Some(8),
        (Asset::ETH, Network::Ethereum) | (Asset::BNB, Network::Bsc) => Some(18),
        (Asset::USDT, Network::Ethereum | Network::Tron) => Some(6),
        (Asset::USDT, Network::Bsc) => Some(18),
        (Asset::USDC, Network::Ethereum) => Some(6),
        (Asset::USDC, Network::Bsc) => Some(18),
        _ => None,
    }
}

/// Which signs a parsed amount may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    /// Strictly greater than zero (deposits, withdrawals, prices).
    Positive,
    /// Zero or more (fees, limits).
    NonNegative,
    /// Anything, including a leading '-' (ledger adjustments).
    Any,
}

/// Why a string or number is not a valid [`Amount`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error(
        "amount is not a plain decimal: amounts are decimal strings like \"0.00012345\"; \
         numbers, exponents and signs other than a leading '-' are not accepted"
    )]
    NotADecimal,
    #[error("{asset} amounts have at most {max} decimal places")]
    TooManyDecimals { asset: Asset, max: u32 },
    #[error("amount must not be negative")]
    Negative,
    #[error("amount must be greater than zero")]
    Zero,
    #[error(
        "amount is too large: at most 100000000000000000000 whole units and 28 significant digits"
    )]
    TooLarge,
    #[error("{asset} is not supported on network {network}")]
    UnsupportedNetwork { asset: Asset, network: Network },
}

impl AmountError {
    /// Stable machine-readable code, for API error bodies.
    pub const fn code(&self) -> &'static str {
        match self {
            AmountError::Empty => "empty",
            AmountError::NotADecimal => "not_a_decimal",
            AmountError::TooManyDecimals { .. } => "too_many_decimals",
            AmountError::Negative => "negative",
            AmountError::Zero => "zero",
            AmountError::TooLarge => "too_large",
            AmountError::UnsupportedNetwork { .. } => "unsupported_network",
        }
    }
}

/// An exact quantity of one asset.
///
/// Invariants: the value is normalized (no trailing zeros, never -0), its
/// magnitude is at most 10^20 whole units, and its scale is at most the
/// asset's ledger decimals — except for amounts from [`Amount::parse_on`],
/// which may carry the (larger) precision of their network.
///
/// Serializes as a plain decimal string such as `"0.00012345"`; the asset is
/// not part of the serialized form, so there is no `Deserialize` (use
/// [`DecimalString`] and parse with the asset known from context).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Amount {
    asset: Asset,
    value: Decimal,
}

impl Amount {
    /// Parses a client-supplied decimal string at the asset's ledger precision.
    ///
    /// Only `-?[0-9]+(\.[0-9]+)?` is accepted; the '-' only with
    /// [`Sign::Any`]. More decimal places than the precision are rejected even
    /// when the extra digits are zeros ("1.000000000" for BTC): a client
    /// sending more digits than the asset has is confused about the asset, and
    /// guessing is worse than a clear error.
    pub fn parse(s: &str, asset: Asset, sign: Sign) -> Result<Amount, AmountError> {
        parse_with_precision(s, asset, asset.ledger_decimals(), sign)
    }

    /// Parses at the precision `asset` has on `network`, e.g. an amount read
    /// from a node. The result may have more decimals than the ledger keeps;
    /// use [`Amount::floor_to_ledger`] before booking it.
    pub fn parse_on(
        s: &str,
        asset: Asset,
        network: Network,
        sign: Sign,
    ) -> Result<Amount, AmountError> {
        let decimals = decimals_on(asset, network)
            .ok_or(AmountError::UnsupportedNetwork { asset, network })?;
        parse_with_precision(s, asset, decimals, sign)
    }

    /// Wraps a decimal whose normalized scale fits the ledger precision.
    pub fn from_decimal(value: Decimal, asset: Asset) -> Result<Amount, AmountError> {
        let value = value.normalize();
        let max = asset.ledger_decimals();
        if value.scale() > max {
            return Err(AmountError::TooManyDecimals { asset, max });
        }
        Amount::checked_new(asset, value).ok_or(AmountError::TooLarge)
    }

    /// Builds an amount from smallest units at the ledger precision.
    pub fn from_units(units: u128, asset: Asset) -> Result<Amount, AmountError> {
        let value =
            units_to_decimal(units, asset.ledger_decimals()).ok_or(AmountError::TooLarge)?;
        Amount::checked_new(asset, value).ok_or(AmountError::TooLarge)
    }

    /// Zero of `asset`.
    pub const fn zero(asset: Asset) -> Amount {
        Amount {
            asset,
            value: Decimal::ZERO,
        }
    }

    pub const fn asset(&self) -> Asset {
        self.asset
    }

    pub const fn value(&self) -> Decimal {
        self.value
    }

    pub const fn is_zero(&self) -> bool {
        self.value.is_zero()
    }

    pub const fn is_negative(&self) -> bool {
        self.value.is_sign_negative() && !self.value.is_zero()
    }

    /// Magnitude in smallest units at the asset's ledger precision.
    ///
    /// This is `|value| * 10^ledger_decimals`; check [`Amount::is_negative`]
    /// (or use [`Amount::signed_units`]) for the sign. Digits below the ledger
    /// precision, which only [`Amount::parse_on`] can produce, are truncated.
    pub fn units(&self) -> u128 {
        let decimals = self.asset.ledger_decimals();
        let truncated = self.value.abs().trunc_with_scale(decimals).normalize();
        // Cannot saturate: |value| <= 10^20 and decimals <= 18, so the result
        // is at most 10^38 < u128::MAX.
        truncated
            .mantissa()
            .unsigned_abs()
            .saturating_mul(pow10(decimals.saturating_sub(truncated.scale())))
    }

    /// Signed smallest units at the ledger precision (truncated toward zero
    /// like [`Amount::units`]).
    pub fn signed_units(&self) -> i128 {
        // Cannot saturate: units() <= 10^38 < i128::MAX.
        let magnitude = i128::try_from(self.units()).unwrap_or(i128::MAX);
        if self.is_negative() {
            -magnitude
        } else {
            magnitude
        }
    }

    /// Exact smallest units on `network` (e.g. wei of USDT on BSC), or `None`
    /// if the pair is unsupported, the amount is negative, or it has more
    /// decimals than the network.
    pub fn units_on(&self, network: Network) -> Option<u128> {
        decimal_to_units(self.value, decimals_on(self.asset, network)?)
    }

    /// Whether the value has no digits below the ledger precision.
    pub fn is_ledger_exact(&self) -> bool {
        self.value.scale() <= self.asset.ledger_decimals()
    }

    /// Rounds toward negative infinity to the ledger precision, so that
    /// crediting an over-precise on-chain amount never credits more than
    /// arrived.
    pub fn floor_to_ledger(&self) -> Amount {
        Amount {
            asset: self.asset,
            value: floor_to_decimals(self.value, self.asset.ledger_decimals()).normalize(),
        }
    }

    /// Exact sum; `None` for different assets or a result out of range.
    pub fn checked_add(&self, other: &Amount) -> Option<Amount> {
        self.combine(other, i128::checked_add)
    }

    /// Exact difference (may be negative); `None` for different assets or a
    /// result out of range.
    pub fn checked_sub(&self, other: &Amount) -> Option<Amount> {
        self.combine(other, i128::checked_sub)
    }

    /// Exact negation.
    pub fn neg(&self) -> Amount {
        Amount {
            asset: self.asset,
            value: (-self.value).normalize(),
        }
    }

    fn combine(&self, other: &Amount, op: fn(i128, i128) -> Option<i128>) -> Option<Amount> {
        if self.asset != other.asset {
            return None;
        }
        // Done on integer mantissas at a common scale because Decimal's own
        // arithmetic rounds when a result needs more than 28 digits.
        let scale = self.value.scale().max(other.value.scale());
        let a = rescaled_mantissa(self.value, scale)?;
        let b = rescaled_mantissa(other.value, scale)?;
        let value = decimal_from_parts(op(a, b)?, scale)?;
        Amount::checked_new(self.asset, value)
    }

    fn checked_new(asset: Asset, value: Decimal) -> Option<Amount> {
        let value = value.normalize();
        within_bounds(value).then_some(Amount { asset, value })
    }
}

/// Amounts of different assets are unordered.
impl PartialOrd for Amount {
    fn partial_cmp(&self, other: &Amount) -> Option<Ordering> {
        (self.asset == other.asset).then(|| self.value.cmp(&other.value))
    }
}

impl fmt::Display for Amount {
    /// Plain normalized decimal: "0.00012345", "1", "0"; never an exponent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.value, f)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.value)
    }
}

impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some(r"^-?[0-9]+(\.[0-9]+)?$"))
            .description(Some("Exact decimal amount as a string"))
            .examples(["0.00012345"])
            .into()
    }
}

impl ToSchema for Amount {}

/// An amount as it arrives in a request body: a JSON string, parsed later
/// once the asset is known.
///
/// Deserialization rejects JSON numbers, because a client that sends `0.1`
/// as a number has already been through a float.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "0.00012345")]
pub struct DecimalString(pub String);

impl DecimalString {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// [`Amount::parse`] of the contained string.
    pub fn parse(&self, asset: Asset, sign: Sign) -> Result<Amount, AmountError> {
        Amount::parse(&self.0, asset, sign)
    }

    /// [`Amount::parse_on`] of the contained string.
    pub fn parse_on(
        &self,
        asset: Asset,
        network: Network,
        sign: Sign,
    ) -> Result<Amount, AmountError> {
        Amount::parse_on(&self.0, asset, network, sign)
    }
}

const NOT_A_JSON_NUMBER: &str = "amount must be a string such as \"0.00012345\", not a JSON number";

impl<'de> Deserialize<'de> for DecimalString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = DecimalString;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount as a string such as \"0.00012345\"")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(DecimalString(v.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(DecimalString(v))
            }

            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Err(E::custom(NOT_A_JSON_NUMBER))
            }

            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Err(E::custom(NOT_A_JSON_NUMBER))
            }

            fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Self::Value, E> {
                Err(E::custom(NOT_A_JSON_NUMBER))
            }

            fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Self::Value, E> {
                Err(E::custom(NOT_A_JSON_NUMBER))
            }

            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Err(E::custom(NOT_A_JSON_NUMBER))
            }
        }

        // deserialize_any, not deserialize_string: serde_json answers a number
        // passed to deserialize_string with its generic "invalid type" error
        // without asking the visitor, which would lose our message.
        deserializer.deserialize_any(Visitor)
    }
}

/// Rounds toward negative infinity to `decimals` places (truncation for
/// positive values). Values already that precise are returned unchanged.
pub fn floor_to_decimals(value: Decimal, decimals: u32) -> Decimal {
    value.round_dp_with_strategy(decimals, RoundingStrategy::ToNegativeInfinity)
}

/// Splits `total_units` in proportion to `weights`, rounding every share down.
///
/// Returns the shares and the undistributed remainder (`total - Σshares`),
/// which is less than the number of weights. Intermediates are 256-bit, so
/// any `u128` inputs are exact. If all weights are zero every share is zero
/// and the whole total is the remainder.
pub fn split_floor(total_units: u128, weights: &[u128]) -> (Vec<u128>, u128) {
    let (shares, _) = floor_shares(total_units, weights);
    let distributed = shares
        .iter()
        .fold(0u128, |sum, share| sum.saturating_add(*share));
    // Σshares <= total because each share <= total * w_i / Σw.
    (shares, total_units.saturating_sub(distributed))
}

/// Splits `total_units` in proportion to `weights` by the largest-remainder
/// method: floor shares, then one extra unit each to the largest fractional
/// remainders, ties going to the lower index.
///
/// The shares add up to exactly `total_units` whenever some weight is
/// non-zero. If all weights are zero (or there are none) every share is zero
/// and nothing is distributed; callers must decide where the total goes.
pub fn split_largest_remainder(total_units: u128, weights: &[u128]) -> Vec<u128> {
    let (mut shares, remainders) = floor_shares(total_units, weights);
    let distributed = shares
        .iter()
        .fold(0u128, |sum, share| sum.saturating_add(*share));
    let leftover = total_units.saturating_sub(distributed);
    if remainders.is_empty() || leftover == 0 {
        return shares;
    }
    let mut order: Vec<usize> = (0..shares.len()).collect();
    // Stable sort keeps lower indices first among equal remainders.
    order.sort_by(|&a, &b| remainders[b].cmp(&remainders[a]));
    // leftover < number of weights, because it is Σ(remainder_i) / Σw.
    let mut left = leftover;
    for index in order {
        if left == 0 {
            break;
        }
        if let Some(share) = shares.get_mut(index) {
            *share = share.saturating_add(1);
            left -= 1;
        }
    }
    shares
}

/// Floor shares plus each share's remainder numerator (total * w_i mod Σw).
/// The remainders are empty when Σw = 0.
fn floor_shares(total_units: u128, weights: &[u128]) -> (Vec<u128>, Vec<U256>) {
    let weight_sum = weights
        .iter()
        .fold(U256::ZERO, |sum, w| sum.saturating_add(U256::from(*w)));
    if weight_sum == U256::ZERO {
        return (vec![0; weights.len()], Vec::new());
    }
    let total = U256::from(total_units);
    let mut shares = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for weight in weights {
        // total * w <= (2^128 - 1)^2 < 2^256, and the quotient is <= total.
        let numerator = total * U256::from(*weight);
        let share = u128::try_from(numerator / weight_sum).unwrap_or(u128::MAX);
        shares.push(share);
        remainders.push(numerator % weight_sum);
    }
    (shares, remainders)
}

/// Smallest units of a non-negative `value` at `decimals` places; `None` if
/// it is negative, has more decimal places, or does not fit in `u128`.
pub fn decimal_to_units(value: Decimal, decimals: u32) -> Option<u128> {
    let value = value.normalize();
    if value.is_sign_negative() || value.scale() > decimals {
        return None;
    }
    let mantissa = u128::try_from(value.mantissa()).ok()?;
    mantissa.checked_mul(10u128.checked_pow(decimals - value.scale())?)
}

/// The decimal worth `units` smallest units at `decimals` places; `None` if
/// it cannot be represented exactly by `Decimal`.
pub fn units_to_decimal(units: u128, decimals: u32) -> Option<Decimal> {
    decimal_from_parts(i128::try_from(units).ok()?, decimals)
}

fn parse_with_precision(
    s: &str,
    asset: Asset,
    decimals: u32,
    sign: Sign,
) -> Result<Amount, AmountError> {
    if s.is_empty() {
        return Err(AmountError::Empty);
    }
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, fraction) = match body.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (body, None),
    };
    let is_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !is_digits(whole) || fraction.is_some_and(|f| !is_digits(f)) {
        return Err(AmountError::NotADecimal);
    }
    // Any '-' is refused unless negatives are allowed, even "-0": a client
    // sending a sign it may not send is wrong whatever the digits say.
    if negative && sign != Sign::Any {
        return Err(AmountError::Negative);
    }
    let fraction = fraction.unwrap_or("");
    let scale = u32::try_from(fraction.len())
        .ok()
        .filter(|scale| *scale <= decimals)
        .ok_or(AmountError::TooManyDecimals {
            asset,
            max: decimals,
        })?;
    let mut mantissa: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(digit - b'0')))
            .ok_or(AmountError::TooLarge)?;
    }
    let limit = 10u128
        .checked_pow(scale)
        .and_then(|p| p.checked_mul(MAX_WHOLE_UNITS))
        .ok_or(AmountError::TooLarge)?;
    if mantissa > limit {
        return Err(AmountError::TooLarge);
    }
    let mut signed = i128::try_from(mantissa).map_err(|_| AmountError::TooLarge)?;
    if negative {
        signed = -signed;
    }
    let value = decimal_from_parts(signed, scale).ok_or(AmountError::TooLarge)?;
    if sign == Sign::Positive && value.is_zero() {
        return Err(AmountError::Zero);
    }
    Amount::checked_new(asset, value).ok_or(AmountError::TooLarge)
}

/// `mantissa * 10^-scale` as a normalized Decimal, stripping trailing zeros
/// first so values like 10^20 at scale 18 still fit the 96-bit mantissa.
fn decimal_from_parts(mut mantissa: i128, mut scale: u32) -> Option<Decimal> {
    while scale > 0 && mantissa % 10 == 0 {
        mantissa /= 10;
        scale -= 1;
    }
    if mantissa == 0 {
        return Some(Decimal::ZERO);
    }
    if scale > MAX_DECIMAL_SCALE {
        return None;
    }
    Decimal::try_from_i128_with_scale(mantissa, scale)
        .ok()
        .map(|d| d.normalize())
}

/// The mantissa of `value` expressed at the larger `scale`.
fn rescaled_mantissa(value: Decimal, scale: u32) -> Option<i128> {
    let factor = i128::try_from(10u128.checked_pow(scale.checked_sub(value.scale())?)?).ok()?;
    value.mantissa().checked_mul(factor)
}

fn within_bounds(value: Decimal) -> bool {
    let scale = value.scale();
    let magnitude = value.mantissa().unsigned_abs();
    10u128
        .checked_pow(scale)
        .and_then(|p| p.checked_mul(MAX_WHOLE_UNITS))
        // Past u128 the limit is above any 96-bit mantissa.
        .is_none_or(|limit| magnitude <= limit)
}

/// 10^exp for the small exponents used with ledger precisions.
fn pow10(exp: u32) -> u128 {
    10u128.saturating_pow(exp)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn btc(s: &str) -> Result<Amount, AmountError> {
        Amount::parse(s, Asset::BTC, Sign::Positive)
    }

    #[test]
    fn asset_codes_round_trip() {
        for asset in Asset::ALL {
            assert_eq!(asset.to_string().parse::<Asset>(), Ok(asset));
            let json = serde_json::to_string(&asset).unwrap();
            assert_eq!(json, format!("\"{}\"", asset.code()));
            assert_eq!(serde_json::from_str::<Asset>(&json).unwrap(), asset);
            assert!(!asset.name().is_empty());
        }
        assert_eq!("BTC".parse::<Asset>(), Ok(Asset::BTC));
        assert!("btc".parse::<Asset>().is_err());
        assert!(" BTC".parse::<Asset>().is_err());
        assert!("".parse::<Asset>().is_err());
        assert!(serde_json::from_str::<Asset>("\"btc\"").is_err());
    }

    #[test]
    fn network_codes_round_trip() {
        for network in Network::ALL {
            assert_eq!(network.to_string().parse::<Network>(), Ok(network));
            let json = serde_json::to_string(&network).unwrap();
            assert_eq!(json, format!("\"{}\"", network.code()));
            assert_eq!(serde_json::from_str::<Network>(&json).unwrap(), network);
            assert!(!network.name().is_empty());
        }
        assert_eq!(serde_json::to_string(&Network::Bsc).unwrap(), "\"bsc\"");
        assert!("Bitcoin".parse::<Network>().is_err());
        assert!("BSC".parse::<Network>().is_err());
    }

    #[test]
    fn network_defaults() {
        assert_eq!(Network::Bitcoin.confirmations(), 3);
        assert_eq!(Network::Dogecoin.confirmations(), 40);
        assert_eq!(Network::Ethereum.confirmations(), 12);
        assert_eq!(Network::Bsc.confirmations(), 15);
        assert_eq!(Network::Tron.confirmations(), 20);
        assert_eq!(Network::Bitcoin.native_asset(), Some(Asset::BTC));
        assert_eq!(Network::Bsc.native_asset(), Some(Asset::BNB));
        assert_eq!(Network::Tron.native_asset(), None);
        assert_eq!(Network::Tron.native_symbol(), "TRX");
        for network in Network::ALL {
            if let Some(asset) = network.native_asset() {
                assert_eq!(asset.code(), network.native_symbol());
                assert!(decimals_on(asset, network).is_some());
            }
        }
    }

    #[test]
    fn precision_per_pair() {
        use Asset::*;
        use Network::*;
        let expected = [
            (BTC, Bitcoin, 8),
            (DOGE, Dogecoin, 8),
            (ETH, Ethereum, 18),
            (BNB, Bsc, 18),
            (USDT, Ethereum, 6),
            (USDT, Bsc, 18),
            (USDT, Tron, 6),
            (USDC, Ethereum, 6),
            (USDC, Bsc, 18),
        ];
        for (asset, network, decimals) in expected {
            assert_eq!(decimals_on(asset, network), Some(decimals));
        }
        assert_eq!(decimals_on(BTC, Ethereum), None);
        assert_eq!(decimals_on(USDC, Tron), None);
        assert_eq!(decimals_on(ETH, Bsc), None);
        for asset in Asset::ALL {
            for network in Network::ALL {
                let supported = SUPPORTED.contains(&(asset, network));
                assert_eq!(decimals_on(asset, network).is_some(), supported);
                assert_eq!(asset.networks().contains(&network), supported);
            }
            // The ledger keeps the smallest precision among the networks.
            let min = asset
                .networks()
                .iter()
                .filter_map(|network| decimals_on(asset, *network))
                .min();
            assert_eq!(min, Some(asset.ledger_decimals()));
        }
    }

    #[test]
    fn accepts_plain_decimals() {
        let amount = btc("0.00012345").unwrap();
        assert_eq!(amount.asset(), Asset::BTC);
        assert_eq!(amount.value(), dec!(0.00012345));
        assert_eq!(amount.units(), 12_345);
        assert_eq!(amount.to_string(), "0.00012345");

        assert_eq!(btc("1").unwrap().units(), 100_000_000);
        assert_eq!(btc("1000000.5").unwrap().to_string(), "1000000.5");
        assert_eq!(btc("007").unwrap().to_string(), "7");
        assert_eq!(btc("1.10").unwrap().to_string(), "1.1");
        assert_eq!(btc("0.00000001").unwrap().units(), 1);

        let zero = Amount::parse("0", Asset::BTC, Sign::NonNegative).unwrap();
        assert!(zero.is_zero());
        assert_eq!(zero.to_string(), "0");
        assert_eq!(zero.units(), 0);
        let zero = Amount::parse("0.000", Asset::BTC, Sign::Any).unwrap();
        assert_eq!(zero.to_string(), "0");

        let negative = Amount::parse("-1.5", Asset::USDT, Sign::Any).unwrap();
        assert!(negative.is_negative());
        assert_eq!(negative.to_string(), "-1.5");
        assert_eq!(negative.units(), 1_500_000);
        assert_eq!(negative.signed_units(), -1_500_000);
        let minus_zero = Amount::parse("-0", Asset::USDT, Sign::Any).unwrap();
        assert_eq!(minus_zero.to_string(), "0");
        assert!(!minus_zero.is_negative());

        let eth = Amount::parse("1.000000000000000001", Asset::ETH, Sign::Positive).unwrap();
        assert_eq!(eth.units(), 1_000_000_000_000_000_001);
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(btc(""), Err(AmountError::Empty));
    }

    #[test]
    fn rejects_non_decimals() {
        for input in [
            "1e5", "1E5", "+1", "--1", "-", ".", ".5", "5.", " 1", "1 ", " ", "NaN", "nan", "inf",
            "-inf", "Infinity", "1_000", "1,000", "1,5", "1.2.3", "0x10", "١", "１", "1.-5", "- 1",
            "−1", "1-", "\u{0}", "1\n",
        ] {
            assert_eq!(btc(input), Err(AmountError::NotADecimal), "{input:?}");
            assert_eq!(
                Amount::parse(input, Asset::BTC, Sign::Any),
                Err(AmountError::NotADecimal),
                "{input:?}"
            );
        }
        let message = AmountError::NotADecimal.to_string();
        assert!(message.contains("\"0.00012345\""));
        assert!(message.contains("exponents"));
    }

    #[test]
    fn rejects_too_many_decimals() {
        let err = AmountError::TooManyDecimals {
            asset: Asset::BTC,
            max: 8,
        };
        assert_eq!(btc("1.000000001"), Err(err));
        // Trailing zeros still count: the client sent more digits than BTC has.
        assert_eq!(btc("1.100000000"), Err(err));
        assert_eq!(
            Amount::parse("0.0000001", Asset::USDT, Sign::Positive),
            Err(AmountError::TooManyDecimals {
                asset: Asset::USDT,
                max: 6
            })
        );
        assert_eq!(err.to_string(), "BTC amounts have at most 8 decimal places");
        let long = format!("1.{}", "0".repeat(10_000));
        assert_eq!(btc(&long), Err(err));
    }

    #[test]
    fn rejects_negative() {
        assert_eq!(btc("-1"), Err(AmountError::Negative));
        assert_eq!(btc("-0"), Err(AmountError::Negative));
        assert_eq!(
            Amount::parse("-0.5", Asset::BTC, Sign::NonNegative),
            Err(AmountError::Negative)
        );
        assert_eq!(
            Amount::parse("-0", Asset::BTC, Sign::NonNegative),
            Err(AmountError::Negative)
        );
    }

    #[test]
    fn rejects_zero_when_positive_required() {
        assert_eq!(btc("0"), Err(AmountError::Zero));
        assert_eq!(btc("0.00000000"), Err(AmountError::Zero));
        assert_eq!(btc("000"), Err(AmountError::Zero));
    }

    #[test]
    fn rejects_too_large() {
        assert_eq!(
            btc("100000000000000000000.00000001"),
            Err(AmountError::TooLarge)
        );
        assert_eq!(btc("100000000000000000001"), Err(AmountError::TooLarge));
        assert_eq!(btc(&"9".repeat(60)), Err(AmountError::TooLarge));
        assert_eq!(
            Amount::parse(&format!("-{}", "9".repeat(60)), Asset::BTC, Sign::Any),
            Err(AmountError::TooLarge)
        );
        // 38 significant digits: within 10^20 but beyond Decimal's mantissa.
        assert_eq!(
            Amount::parse(
                "12345678901234567890.123456789012345678",
                Asset::ETH,
                Sign::Positive
            ),
            Err(AmountError::TooLarge)
        );
        // The bound itself is accepted, even written with all ETH decimals.
        let max = Amount::parse(
            "100000000000000000000.000000000000000000",
            Asset::ETH,
            Sign::Positive,
        )
        .unwrap();
        assert_eq!(max.units(), 10u128.pow(38));
        assert_eq!(
            btc(&format!("{}1", "0".repeat(1000))).unwrap().units(),
            100_000_000
        );
    }

    #[test]
    fn network_precision_parsing() {
        let on_bsc = Amount::parse_on(
            "1.000000000000000001",
            Asset::USDT,
            Network::Bsc,
            Sign::Positive,
        )
        .unwrap();
        assert!(!on_bsc.is_ledger_exact());
        assert_eq!(on_bsc.units_on(Network::Bsc), Some(10u128.pow(18) + 1));
        assert_eq!(on_bsc.units_on(Network::Tron), None);
        assert_eq!(on_bsc.units(), 1_000_000);
        let floored = on_bsc.floor_to_ledger();
        assert!(floored.is_ledger_exact());
        assert_eq!(floored.to_string(), "1");

        assert_eq!(
            Amount::parse_on("1.0000001", Asset::USDT, Network::Tron, Sign::Positive),
            Err(AmountError::TooManyDecimals {
                asset: Asset::USDT,
                max: 6
            })
        );
        let err = Amount::parse_on("1", Asset::USDC, Network::Tron, Sign::Positive);
        assert_eq!(
            err,
            Err(AmountError::UnsupportedNetwork {
                asset: Asset::USDC,
                network: Network::Tron
            })
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "USDC is not supported on network tron"
        );
        let usdt = Amount::parse("2.5", Asset::USDT, Sign::Positive).unwrap();
        assert_eq!(usdt.units_on(Network::Bsc), Some(2_500_000_000_000_000_000));
        assert_eq!(usdt.units_on(Network::Tron), Some(2_500_000));
    }

    #[test]
    fn error_codes_are_distinct() {
        let errors = [
            AmountError::Empty,
            AmountError::NotADecimal,
            AmountError::TooManyDecimals {
                asset: Asset::BTC,
                max: 8,
            },
            AmountError::Negative,
            AmountError::Zero,
            AmountError::TooLarge,
            AmountError::UnsupportedNetwork {
                asset: Asset::BTC,
                network: Network::Tron,
            },
        ];
        let mut codes: Vec<_> = errors.iter().map(AmountError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
        assert!(
            codes
                .iter()
                .all(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
    }

    #[test]
    fn from_decimal_checks_scale_and_range() {
        let amount = Amount::from_decimal(dec!(1.50000000000), Asset::BTC).unwrap();
        assert_eq!(amount.to_string(), "1.5");
        assert_eq!(
            Amount::from_decimal(dec!(0.000000001), Asset::BTC),
            Err(AmountError::TooManyDecimals {
                asset: Asset::BTC,
                max: 8
            })
        );
        assert_eq!(
            Amount::from_decimal(dec!(100000000000000000000.00000001), Asset::BTC),
            Err(AmountError::TooLarge)
        );
        assert_eq!(
            Amount::from_decimal(Decimal::MAX, Asset::BTC),
            Err(AmountError::TooLarge)
        );
        let negative = Amount::from_decimal(dec!(-3), Asset::BTC).unwrap();
        assert!(negative.is_negative());
        let minus_zero = Amount::from_decimal(-Decimal::ZERO, Asset::BTC).unwrap();
        assert!(!minus_zero.is_negative());
        assert_eq!(minus_zero.to_string(), "0");
    }

    #[test]
    fn from_units_checks_range() {
        assert_eq!(
            Amount::from_units(12_345, Asset::BTC).unwrap().to_string(),
            "0.00012345"
        );
        assert_eq!(Amount::from_units(0, Asset::ETH).unwrap().to_string(), "0");
        assert_eq!(
            Amount::from_units(10u128.pow(38), Asset::ETH)
                .unwrap()
                .to_string(),
            "100000000000000000000"
        );
        assert_eq!(
            Amount::from_units(10u128.pow(38) + 1, Asset::ETH),
            Err(AmountError::TooLarge)
        );
        assert_eq!(
            Amount::from_units(u128::MAX, Asset::BTC),
            Err(AmountError::TooLarge)
        );
    }

    #[test]
    fn arithmetic_is_exact_and_same_asset_only() {
        let a = btc("0.1").unwrap();
        let b = btc("0.2").unwrap();
        assert_eq!(a.checked_add(&b).unwrap().to_string(), "0.3");
        assert_eq!(a.checked_sub(&b).unwrap().to_string(), "-0.1");
        assert_eq!(b.checked_sub(&b).unwrap().to_string(), "0");
        let eth = Amount::parse("0.1", Asset::ETH, Sign::Positive).unwrap();
        assert_eq!(a.checked_add(&eth), None);
        assert_eq!(a.checked_sub(&eth), None);
        assert_eq!(a.partial_cmp(&eth), None);
        assert!(a < b);
        assert!(b > a);
        assert_eq!(a.neg().to_string(), "-0.1");

        let max = Amount::from_units(10u128.pow(38), Asset::ETH).unwrap();
        let wei = Amount::from_units(1, Asset::ETH).unwrap();
        assert_eq!(max.checked_add(&wei), None);
        assert_eq!(max.neg().checked_sub(&wei), None);
        // Decimal's own `+` would round this 30-digit sum; ours stays exact.
        let big = Amount::parse("79228162514.264337593543950335", Asset::ETH, Sign::Any).unwrap();
        assert_eq!(
            big.checked_add(&big).unwrap().to_string(),
            "158456325028.52867518708790067"
        );
        // This sum's 30 significant digits exceed Decimal's 96-bit mantissa:
        // refused, not rounded.
        let odd = Amount::parse("79228162514.264337593543950331", Asset::ETH, Sign::Any).unwrap();
        let ten = Amount::parse("100", Asset::ETH, Sign::Any).unwrap();
        assert_eq!(odd.checked_add(&ten), None);
    }

    #[test]
    fn serializes_as_plain_string() {
        let amount = btc("0.00012345").unwrap();
        assert_eq!(serde_json::to_string(&amount).unwrap(), "\"0.00012345\"");
        let tiny = Amount::from_units(1, Asset::ETH).unwrap();
        assert_eq!(
            serde_json::to_string(&tiny).unwrap(),
            "\"0.000000000000000001\""
        );
        let big = Amount::from_units(10u128.pow(28), Asset::BTC).unwrap();
        assert_eq!(big.to_string(), "100000000000000000000");
    }

    #[test]
    fn decimal_string_rejects_json_numbers() {
        let parsed: DecimalString = serde_json::from_str("\"0.00012345\"").unwrap();
        assert_eq!(parsed.as_str(), "0.00012345");
        assert_eq!(
            parsed.parse(Asset::BTC, Sign::Positive).unwrap().units(),
            12_345
        );
        for number in ["0.1", "1", "-1", "1e5", "18446744073709551616"] {
            let err = serde_json::from_str::<DecimalString>(number).unwrap_err();
            assert!(
                err.to_string().starts_with(NOT_A_JSON_NUMBER),
                "{number}: {err}"
            );
        }
        assert!(serde_json::from_str::<DecimalString>("null").is_err());
        assert!(serde_json::from_str::<DecimalString>("true").is_err());

        #[derive(Debug, Deserialize)]
        struct Body {
            amount: DecimalString,
        }
        let err = serde_json::from_str::<Body>(r#"{"amount": 0.5}"#).unwrap_err();
        assert!(err.to_string().contains("not a JSON number"));
        let body: Body = serde_json::from_str(r#"{"amount": "0.5"}"#).unwrap();
        assert_eq!(body.amount, DecimalString("0.5".to_owned()));
        assert_eq!(
            serde_json::to_string(&DecimalString("1.5".to_owned())).unwrap(),
            "\"1.5\""
        );
    }

    #[test]
    fn schemas_are_strings() {
        use utoipa::PartialSchema;
        for schema in [DecimalString::schema(), Amount::schema()] {
            let json = serde_json::to_value(schema).unwrap();
            assert_eq!(json["type"], "string", "{json}");
        }
        let json = serde_json::to_value(Asset::schema()).unwrap();
        assert!(json.to_string().contains("\"USDT\""));
        let json = serde_json::to_value(Network::schema()).unwrap();
        assert!(json.to_string().contains("\"bsc\""));
    }

    #[test]
    fn floor_rounds_toward_negative_infinity() {
        assert_eq!(floor_to_decimals(dec!(1.239), 2), dec!(1.23));
        assert_eq!(floor_to_decimals(dec!(-1.231), 2), dec!(-1.24));
        assert_eq!(floor_to_decimals(dec!(1.2), 8), dec!(1.2));
        assert_eq!(floor_to_decimals(dec!(0.999999999), 8), dec!(0.99999999));
        assert_eq!(floor_to_decimals(dec!(5), 0), dec!(5));
    }

    #[test]
    fn unit_conversions() {
        assert_eq!(decimal_to_units(dec!(1.5), 8), Some(150_000_000));
        assert_eq!(decimal_to_units(dec!(1.50000000000), 8), Some(150_000_000));
        assert_eq!(decimal_to_units(dec!(0.000000001), 8), None);
        assert_eq!(decimal_to_units(dec!(-1), 8), None);
        assert_eq!(decimal_to_units(-Decimal::ZERO, 8), Some(0));
        assert_eq!(decimal_to_units(Decimal::MAX, 18), None);
        assert_eq!(
            decimal_to_units(Decimal::MAX, 0),
            Some(79_228_162_514_264_337_593_543_950_335)
        );
        assert_eq!(units_to_decimal(150_000_000, 8), Some(dec!(1.5)));
        assert_eq!(units_to_decimal(0, 40), Some(Decimal::ZERO));
        assert_eq!(units_to_decimal(1, 29), None);
        assert_eq!(
            units_to_decimal(100, 30),
            Some(dec!(0.0000000000000000000000000001))
        );
        assert_eq!(units_to_decimal(u128::MAX, 18), None);
        assert_eq!(
            units_to_decimal(10u128.pow(38), 18),
            Some(dec!(100000000000000000000))
        );
    }

    #[test]
    fn split_examples() {
        assert_eq!(split_floor(10, &[1, 1, 1]), (vec![3, 3, 3], 1));
        assert_eq!(split_largest_remainder(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(split_largest_remainder(10, &[1, 2, 2]), vec![2, 4, 4]);
        assert_eq!(split_largest_remainder(7, &[1, 1, 5]), vec![1, 1, 5]);
        assert_eq!(split_largest_remainder(5, &[3, 3, 1]), vec![2, 2, 1]);
        assert_eq!(split_floor(10, &[0, 0]), (vec![0, 0], 10));
        assert_eq!(split_largest_remainder(10, &[0, 0]), vec![0, 0]);
        assert_eq!(split_floor(10, &[]), (vec![], 10));
        assert_eq!(split_largest_remainder(10, &[]), Vec::<u128>::new());
        assert_eq!(
            split_floor(u128::MAX, &[u128::MAX, u128::MAX]),
            (vec![u128::MAX / 2, u128::MAX / 2], 1)
        );
        assert_eq!(
            split_largest_remainder(u128::MAX, &[u128::MAX, u128::MAX]),
            vec![u128::MAX / 2 + 1, u128::MAX / 2]
        );
    }

    fn u256(x: u128) -> U256 {
        U256::from(x)
    }

    fn weight() -> impl Strategy<Value = u128> {
        prop_oneof![
            4 => 0..=u128::from(u64::MAX),
            2 => 0u128..10,
            1 => any::<u128>(),
        ]
    }

    fn total() -> impl Strategy<Value = u128> {
        prop_oneof![0u128..1_000, 0..=u128::MAX / 2]
    }

    /// Checks shares against exact rational bounds: floor <= share <= ceil.
    fn assert_within_proportional_bounds(total: u128, weights: &[u128], shares: &[u128]) {
        let sum = weights.iter().fold(U256::ZERO, |s, w| s + u256(*w));
        for (share, weight) in shares.iter().zip(weights) {
            let numerator = u256(total) * u256(*weight);
            let floor = numerator / sum;
            let ceil = floor + U256::from(u8::from(numerator % sum != U256::ZERO));
            assert!(u256(*share) >= floor && u256(*share) <= ceil);
        }
    }

    proptest! {
        #[test]
        fn split_floor_conserves(
            total in total(),
            weights in prop::collection::vec(weight(), 0..50),
        ) {
            let (shares, remainder) = split_floor(total, &weights);
            prop_assert_eq!(shares.len(), weights.len());
            let sum = shares.iter().fold(U256::ZERO, |s, x| s + u256(*x));
            prop_assert_eq!(sum + u256(remainder), u256(total));
            if weights.iter().any(|w| *w > 0) {
                prop_assert!(remainder < u128::try_from(weights.len()).unwrap());
                assert_within_proportional_bounds(total, &weights, &shares);
                // Floor shares are exactly the lower bound.
                let wsum = weights.iter().fold(U256::ZERO, |s, w| s + u256(*w));
                for (share, weight) in shares.iter().zip(&weights) {
                    prop_assert_eq!(u256(*share), u256(total) * u256(*weight) / wsum);
                }
            } else {
                prop_assert!(shares.iter().all(|s| *s == 0));
                prop_assert_eq!(remainder, total);
            }
        }

        #[test]
        fn split_largest_remainder_conserves(
            total in total(),
            weights in prop::collection::vec(weight(), 0..50),
        ) {
            let shares = split_largest_remainder(total, &weights);
            prop_assert_eq!(shares.len(), weights.len());
            let sum = shares.iter().fold(U256::ZERO, |s, x| s + u256(*x));
            if weights.iter().any(|w| *w > 0) {
                prop_assert_eq!(sum, u256(total));
                assert_within_proportional_bounds(total, &weights, &shares);
                for i in 0..weights.len() {
                    for j in 0..weights.len() {
                        if weights[i] >= weights[j] {
                            prop_assert!(shares[i] + 1 >= shares[j]);
                        }
                        if weights[i] > weights[j] {
                            prop_assert!(shares[i] >= shares[j]);
                        }
                    }
                }
                prop_assert_eq!(&shares, &split_largest_remainder(total, &weights));
            } else {
                prop_assert!(shares.iter().all(|s| *s == 0));
            }
        }

        #[test]
        fn display_parse_round_trips(
            units in any::<u64>(),
            asset in prop::sample::select(Asset::ALL.to_vec()),
        ) {
            let amount = Amount::from_units(u128::from(units), asset).unwrap();
            let text = amount.to_string();
            let parsed = Amount::parse(&text, asset, Sign::NonNegative).unwrap();
            prop_assert_eq!(parsed, amount);
            prop_assert_eq!(parsed.units(), u128::from(units));
            prop_assert_eq!(serde_json::to_string(&amount).unwrap(), format!("\"{text}\""));
            let negative = amount.neg();
            let parsed = Amount::parse(&negative.to_string(), asset, Sign::Any).unwrap();
            prop_assert_eq!(parsed, negative);
        }

        #[test]
        fn display_parse_round_trips_large(units in 0..=10u128.pow(38)) {
            // Not every ETH unit count fits Decimal's 96-bit mantissa.
            if let Ok(amount) = Amount::from_units(units, Asset::ETH) {
                let parsed = Amount::parse(&amount.to_string(), Asset::ETH, Sign::NonNegative);
                prop_assert_eq!(parsed, Ok(amount));
                prop_assert_eq!(amount.units(), units);
            }
        }

        #[test]
        fn parse_never_panics_on_any_text(s in "\\PC*") {
            for sign in [Sign::Positive, Sign::NonNegative, Sign::Any] {
                let _ = Amount::parse(&s, Asset::ETH, sign);
                let _ = Amount::parse_on(&s, Asset::USDT, Network::Bsc, sign);
            }
        }

        #[test]
        fn parse_never_panics_on_number_like_text(s in "[0-9.eE+ -]{0,40}") {
            for sign in [Sign::Positive, Sign::NonNegative, Sign::Any] {
                if let Ok(amount) = Amount::parse(&s, Asset::BTC, sign) {
                    // Anything accepted matches the grammar and round-trips.
                    prop_assert!(!s.contains(['e', 'E', '+', ' ']));
                    prop_assert_eq!(
                        Amount::parse(&amount.to_string(), Asset::BTC, Sign::Any),
                        Ok(amount)
                    );
                }
            }
        }

        #[test]
        fn arithmetic_matches_units(
            a in 0..=u128::from(u64::MAX),
            b in 0..=u128::from(u64::MAX),
        ) {
            let x = Amount::from_units(a, Asset::BTC).unwrap();
            let y = Amount::from_units(b, Asset::BTC).unwrap();
            prop_assert_eq!(x.checked_add(&y).unwrap().units(), a + b);
            let diff = x.checked_sub(&y).unwrap();
            let expected = i128::try_from(a).unwrap() - i128::try_from(b).unwrap();
            prop_assert_eq!(diff.signed_units(), expected);
            prop_assert_eq!(x.partial_cmp(&y), Some(a.cmp(&b)));
        }
    }
}
