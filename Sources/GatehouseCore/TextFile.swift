import Foundation

/// A settings, policy or secret file read whole as UTF-8 text, with why it could not be in words:
/// Foundation on Linux says "NSCocoaErrorDomain error 256" for a directory and the like.
public enum TextFile {
    public struct Unreadable: Error, CustomStringConvertible, Sendable, Equatable {
        public var why: String
        public var description: String { why }
    }

    /// The largest file read: settings, policies, secrets and statements are far smaller; a device or a pipe that
    /// never ends (`/dev/zero`) is refused after this many bytes instead of filling the memory.
    public static let maximumBytes = 16 << 20

    public static func read(_ path: String, maximumBytes: Int = TextFile.maximumBytes) throws(Unreadable) -> String {
        var status = stat()
        guard stat(path, &status) == 0 else {
            // Not only "absent": a folder on the way this user may not enter hides a file that is there.
            switch errno {
            case EACCES: throw Unreadable(why: "permission denied: a folder on its path cannot be entered by this user (uid \(getuid()))")
            case ENOTDIR: throw Unreadable(why: "a part of its path is a file, not a folder")
            default: throw Unreadable(why: "there is no such file")
            }
        }
        if (status.st_mode & S_IFMT) == S_IFDIR { throw Unreadable(why: "it is a directory, not a file") }
        guard access(path, R_OK) == 0 else { throw Unreadable(why: "permission denied: this user (uid \(getuid())) may not read it") }
        // Read through a handle: `contents(atPath:)` gives nothing for a device or a pipe (`/dev/null`, `<(...)`).
        guard let handle = FileHandle(forReadingAtPath: path) else { throw Unreadable(why: "it could not be opened") }
        defer { try? handle.close() }
        var data = Data()
        do {
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                data.append(chunk)
                if data.count > maximumBytes {
                    throw Unreadable(why: "it is larger than \(maximumBytes >> 20) MiB, more than such a file ever holds (is it the file meant?)")
                }
            }
        } catch let error as Unreadable {
            throw error
        } catch {
            throw Unreadable(why: "it could not be read")
        }
        // A byte order mark (editors on Windows write one) is not part of the text, least of all of a secret.
        if data.starts(with: [0xEF, 0xBB, 0xBF]) { data.removeFirst(3) }
        guard let text = String(validating: data, as: UTF8.self) else { throw Unreadable(why: "it is not UTF-8 text") }
        return text
    }
}
