/// A failed TLS handshake with a database, said in words an operator can act on. The TLS library's
/// own description names a code, not the cause.
public enum TLSFailure {
    /// What went wrong, when `description` (a TLS error as the library prints it) is a certificate
    /// the client refused; nil for any other error.
    public static func explain(_ description: String, host: String) -> String? {
        if description.contains("CERTIFICATE_VERIFY_FAILED") {
            return "the database's TLS certificate is not signed by an authority Gatehouse trusts (the system's, or the sslrootcert file); name the authority that signed it with sslrootcert"
        }
        if description.contains("failedToValidateHostname") || description.contains("serverHostnameImpossibleToMatch") {
            return "the database's TLS certificate does not name \(host), the host it was reached at; connect by a name (or address) the certificate has, or use sslmode verify-ca to check the signature only"
        }
        return nil
    }
}
