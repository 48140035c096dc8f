-- Acquisition parameters the drift detectors read (kVp, slice thickness, pixel spacing,
-- contrast), so that a drift report can compare any two stored periods.
ALTER TABLE ai_results
    ADD COLUMN kvp                 double precision,
    ADD COLUMN slice_thickness     double precision,
    ADD COLUMN pixel_spacing       double precision,
    ADD COLUMN contrast_indication boolean;
ALTER TABLE cases
    ADD COLUMN kvp                 double precision,
    ADD COLUMN slice_thickness     double precision,
    ADD COLUMN pixel_spacing       double precision,
    ADD COLUMN contrast_indication boolean;
