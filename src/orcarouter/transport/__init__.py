"""The one outbound HTTP client every upstream call goes through."""
