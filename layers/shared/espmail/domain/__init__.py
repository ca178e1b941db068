"""Plain domain types. Nothing here knows about DynamoDB, S3 or SendGrid."""
