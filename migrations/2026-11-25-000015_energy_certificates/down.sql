DROP TABLE certificate_allocations;
DROP TABLE certificate_coverage_days;
DROP TABLE energy_certificates;
DROP FUNCTION certificate_allocation_checked();
DROP FUNCTION energy_certificate_records_immutable();
-- btree_gist stays: other objects may use it.
