"""AFAS Profit (HRM): employees from a GetConnector."""
