//! Back-office roles and what each may do. Every `/admin/v1` route names one
//! permission; the matrix below is the single source of truth (and the
//! route table test walks it).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Support,
    Finance,
    Compliance,
    Operations,
    Superadmin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Support,
        Role::Finance,
        Role::Compliance,
        Role::Operations,
        Role::Superadmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Support => "support",
            Role::Finance => "finance",
            Role::Compliance => "compliance",
            Role::Operations => "operations",
            Role::Superadmin => "superadmin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn can(self, p: Permission) -> bool {
        use Permission as P;
        use Role as R;
        match self {
            R::Superadmin => true,
            R::Support => matches!(p, P::UsersRead | P::UsersWrite | P::CatalogRead),
            R::Finance => matches!(
                p,
                P::UsersRead
                    | P::ReportsRead
                    | P::PricesWrite
                    | P::SettlementsRun
                    | P::WithdrawalsApprove
                    | P::CatalogRead
                    | P::CarbonRead
            ),
            R::Compliance => matches!(
                p,
                P::UsersRead
                    | P::UsersWrite
                    | P::AuditRead
                    | P::ReportsRead
                    | P::WithdrawalsApprove
                    | P::CatalogRead
                    | P::CarbonRead
            ),
            R::Operations => matches!(
                p,
                P::CatalogRead
                    | P::CatalogWrite
                    | P::PricesWrite
                    | P::SettlementsRun
                    | P::CarbonWrite
                    | P::CarbonRead
                    | P::PartnersRead
            ),
        }
    }
}

/// One permission per kind of back-office action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    UsersRead,
    UsersWrite,
    StaffManage,
    AuditRead,
    ReportsRead,
    PartnersRead,
    PartnersManage,
    CatalogRead,
    CatalogWrite,
    PricesWrite,
    SettlementsRun,
    WithdrawalsApprove,
    CarbonWrite,
    /// Read carbon data: factors, certificates, credits, retirements, the report.
    CarbonRead,
}

impl Permission {
    /// Actions that need a fresh second factor (step-up) even in a valid session.
    pub fn needs_step_up(self) -> bool {
        matches!(
            self,
            Permission::StaffManage
                | Permission::PartnersManage
                | Permission::WithdrawalsApprove
                | Permission::UsersWrite
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_superadmin_manages_staff_and_partner_keys() {
        for r in Role::ALL {
            assert_eq!(r.can(Permission::StaffManage), r == Role::Superadmin);
            assert_eq!(r.can(Permission::PartnersManage), r == Role::Superadmin);
        }
        assert!(Role::Compliance.can(Permission::AuditRead));
        assert!(!Role::Support.can(Permission::AuditRead));
        assert_eq!(Role::parse("finance"), Some(Role::Finance));
        assert_eq!(Role::parse("root"), None);
    }
}
