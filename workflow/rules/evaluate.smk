# Stage 9: evaluate trained runs on the test protocols; CSVs, figures and the report.
