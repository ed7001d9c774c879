DROP TABLE carbon_days;
DROP TABLE carbon_facility_days;
DROP TABLE meter_readings;
DROP TABLE facility_energy;
DROP TABLE emission_factors;
DROP FUNCTION emission_factors_immutable();
