from common.grpc_io import use_iomgr_io

use_iomgr_io()

from gateway.main import main  # noqa: E402  (grpc must load after the line above)

if __name__ == "__main__":
    main()
