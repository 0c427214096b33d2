# Stage 8: train the HMR regressor (SD and DSR runs, ablation variants).
