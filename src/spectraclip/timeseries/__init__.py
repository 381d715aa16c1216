"""Seasonal analysis and trends of a stack of dated scenes (`spectraclip timeseries`): `timeseries.stack` (dated
scenes on one grid), `timeseries.job` (the per-date head of the scene runner, trends, anomalies, outputs),
`timeseries.trends`, `timeseries.outputs`, `timeseries.plot`. Imports nothing (the modules pull in torch and
rasterio)."""
