/// Machine-readable error codes that code (the CLI, the store, the transports) matches on, or that
/// several places raise. Written once here so a match cannot drift from the raise.
public enum ErrorCode {
    public static let adminOnly = "admin_only"
    public static let invalidToken = "invalid_token"
    public static let missingToken = "missing_token"
    public static let principalRemoved = "principal_removed"
    public static let sessionExpired = "session_expired"
    public static let humanTokenRefused = "human_token_refused"
    public static let signInRefused = "sign_in_refused"
    public static let providerUnavailable = "provider_unavailable"
    public static let principalBlocked = "principal_blocked"
    public static let storeUnavailable = "store_unavailable"
    public static let storeOutcomeUnknown = "store_outcome_unknown"
    public static let concurrentChange = "concurrent_change"
    public static let requestNotFound = "request_not_found"
    public static let grantNotFound = "grant_not_found"
    public static let notARequester = "not_a_requester"
    public static let missingComment = "missing_comment"
    public static let rateLimited = "rate_limited"
    public static let tooManyRequests = "too_many_requests"
}
