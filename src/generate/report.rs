//! `maas-usage report`: the monthly spend report as one self-contained HTML file.
